from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.process import ServerProcess

SECRET = "flask-shared-secret"


@pytest.fixture
async def zapmux_process(tmp_path: Path) -> AsyncIterator[Callable[..., ServerProcess]]:
    """Build zapmux processes (not started); every one is stopped at the end."""
    made: list[ServerProcess] = []

    def build(flask_url: str, **env: str) -> ServerProcess:
        env.setdefault("ZAPMUX_WEBHOOK_SECRET", SECRET)
        made.append(ServerProcess(tmp_path / f"node{len(made)}", ZAPMUX_FLASK_URL=flask_url, **env))
        return made[-1]

    yield build
    for proc in made:
        await proc.close()
