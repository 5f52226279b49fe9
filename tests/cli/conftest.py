"""Fixtures for the CLI tests (see terminal.py for the server they drive).

``server`` is one server for the whole session (tests use their own tenant ids on it);
``launch`` starts a fresh one for tests that look at every tenant (doctor, reset);
``receiver`` is a stand-in webhook receiver whose answer a test can change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.terminal import CliServer, Receiver, start_server
from tests.helpers import free_port


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads .env from the working directory: run where there is none.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def closed_url() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    receiver = Receiver()
    live = start_server(tmp_path_factory.mktemp("zapmux"), receiver.url)
    yield live
    live.stop()
    receiver.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., CliServer]]:
    """Start a fresh server: ``launch(flask_url, **env)``; all stopped at the end."""
    started: list[CliServer] = []

    def _launch(flask_url: str, **env: str) -> CliServer:
        started.append(start_server(tmp_path / f"server{len(started)}", flask_url, **env))
        return started[-1]

    yield _launch
    for live in started:
        live.stop()
