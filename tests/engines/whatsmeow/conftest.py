"""Helpers for the whatsmeow engine tests: real worker processes, and proxies that
make the offline dial deterministic (refused at once, or hanging forever)."""

from __future__ import annotations

import gc
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from zapmux.config import Settings

# The worker-side tests load neonize here. Its import leaves an os.popen("uname -a")
# unclosed; subprocess keeps it in a private list until the next Popen, where its
# ResourceWarning would fail an unrelated test. Reap it now, under this filter.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ResourceWarning)
    import neonize.aioze.client  # noqa: F401

    deadline = time.monotonic() + 5
    while subprocess._active and time.monotonic() < deadline:  # type: ignore[attr-defined]
        subprocess._cleanup()  # type: ignore[attr-defined]
        time.sleep(0.01)
    gc.collect()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(auth_dir=tmp_path / "auth", data_dir=tmp_path / "data", _env_file=None)


@pytest.fixture
def refused_proxy() -> str:
    """A proxy address nobody listens on: the dial fails at once, network or not."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
