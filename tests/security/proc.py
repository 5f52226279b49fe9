"""A real ``python -m zapmux serve`` in a child process, as an operator would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from tests.helpers import free_port


def server_env(root: Path, **values: str) -> dict[str, str]:
    """The child's environment: nothing of the developer's ZAPMUX_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ZAPMUX_") and k not in {"FLASK_URL", "PORT", "AUTH_DIR"}
    }
    env.update(
        {
            "ZAPMUX_DATA_DIR": str(root / "data"),
            "ZAPMUX_AUTH_DIR": str(root / "auth"),
            "ZAPMUX_FLASK_URL": "http://127.0.0.1:9",
            "ZAPMUX_SEND_RATE_PER_MINUTE": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(values)
    return env


class ServerProcess:
    """``zapmux serve`` on a free port; stderr and stdout go to ``log_path``."""

    def __init__(self, root: Path, *args: str, host: str = "127.0.0.1", **env: str) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.argv = [sys.executable, "-m", "zapmux", "serve", "--host", host]
        self.argv += ["--port", str(self.port), "--engine", "sandbox", *args]
        self.env = server_env(root, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.root, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_healthy(20.0)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"zapmux exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"zapmux did not answer /health: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
