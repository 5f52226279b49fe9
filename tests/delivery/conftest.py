from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.process import ZapmuxProcess

SECRET = "flask-shared-secret"


@pytest.fixture
async def zapmux_process(tmp_path: Path) -> AsyncIterator[Callable[..., ZapmuxProcess]]:
    """Build zapmux processes (not started); every one is stopped at the end."""
    made: list[ZapmuxProcess] = []

    def build(flask_url: str, **env: str) -> ZapmuxProcess:
        root = tmp_path / f"node{len(made)}"
        root.mkdir()
        env.setdefault("ZAPMUX_WEBHOOK_SECRET", SECRET)
        made.append(ZapmuxProcess(root, flask_url, **env))
        return made[-1]

    yield build
    for proc in made:
        await proc.close()
