from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LiveServer, Receiver, make_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never depend on the developer's ZAPMUX_* variables (or the seed's)."""
    for name in list(os.environ):
        if name.startswith("ZAPMUX_") and name != "ZAPMUX_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    for name in ("FLASK_URL", "PORT", "AUTH_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


@pytest.fixture
def settings_for(tmp_path: Path) -> Any:
    def build(**overrides: Any) -> Any:
        return make_settings(tmp_path, **overrides)

    return build


@pytest.fixture
async def server(tmp_path: Path, receiver: Receiver) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as live:
        yield live


@pytest.fixture
async def blackhole_proxy() -> AsyncIterator[str]:
    """A proxy that accepts and never answers: a whatsmeow worker stays alive, dialing."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in held:
        writer.close()
    server.close()
