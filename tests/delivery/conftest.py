from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.process import ServerProcess

SECRET = "flask-shared-secret"


#: ``await start_node(flask_url, **env)``: a zapmux process, started, signing with SECRET
StartNode = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start zapmux processes; every one is stopped at the end."""
    made: list[ServerProcess] = []

    async def start(flask_url: str, **env: str) -> ServerProcess:
        env.setdefault("ZAPMUX_WEBHOOK_SECRET", SECRET)
        made.append(ServerProcess(tmp_path / f"node{len(made)}", ZAPMUX_FLASK_URL=flask_url, **env))
        await made[-1].start()
        return made[-1]

    yield start
    for proc in made:
        await proc.close()
