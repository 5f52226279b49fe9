"""zapmux as a real process (``python -m zapmux serve``), as an operator runs it.

For the tests that need one: to kill it with SIGKILL and start it again on the same data,
to look at its children or its whole log, to bind it to an address, or to drive it from
the CLI or a browser. ``ServerProcess`` is the one way the tests start a server process;
``serve_once`` runs a start that is meant to be refused.

Async tests ``await start()`` / ``kill()`` / ``close()`` (or ``async with``) and use the
tenant steps of ``tests.helpers.TenantSteps`` on it; synchronous tests use ``with`` and
``blocking`` (the same steps, run to their end).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from tests.helpers import DISCARD_URL, BlockingSteps, Received, TenantSteps, free_port

#: The seed's names for settings, which a server reads as well as the ZAPMUX_* ones.
SEED_ALIASES = ("FLASK_URL", "PORT", "AUTH_DIR")
#: What a test server runs with unless the test says otherwise: quick retries and no
#: pacing, as ``tests.helpers.make_settings`` gives a server in the test's event loop.
QUICK_SETTINGS = {
    "ZAPMUX_FLASK_URL": DISCARD_URL,
    "ZAPMUX_SEND_RATE_PER_MINUTE": "0",
    "ZAPMUX_RECONNECT_BASE_S": "0.05",
    "ZAPMUX_RECONNECT_CAP_S": "0.2",
    "ZAPMUX_DELIVERY_BACKOFF_BASE_S": "0.05",
    "ZAPMUX_DELIVERY_BACKOFF_CAP_S": "0.3",
}


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's zapmux settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ZAPMUX_") and k not in SEED_ALIASES
    }
    return {**env, **extra}


def server_env(
    root: Path, defaults: Mapping[str, str] = QUICK_SETTINGS, **values: str | None
) -> dict[str, str]:
    """A server's environment: data and auth under ``root``, ``defaults``, then ``values``
    (a value of None leaves that variable out)."""
    env: dict[str, str | None] = {
        **clean_environ(ZAPMUX_DATA_DIR=str(root / "data"), ZAPMUX_AUTH_DIR=str(root / "auth")),
        "PYTHONUNBUFFERED": "1",
        **defaults,
        **values,
    }
    return {k: v for k, v in env.items() if v is not None}


def serve_once(
    root: Path, *args: str, engine: str = "sandbox", **env: str
) -> subprocess.CompletedProcess[str]:
    """``zapmux serve ARGS`` run to its end (a start that is refused), output captured."""
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "zapmux", "serve", "--engine", engine, *args],
        cwd=root,  # no .env file of the checkout
        env=server_env(root, **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


class ServerProcess(TenantSteps):
    """``zapmux serve`` on a free port over ``root``, which outlives it (start, kill, start).

    ``args`` go on the command line; ``env`` over ``defaults`` (``{}``: the settings a new
    user has); ``api_key`` is set as ZAPMUX_API_KEY and sent by ``http`` and ``blocking``.
    Each start logs to a file of its own.
    """

    def __init__(
        self,
        root: Path,
        *args: str,
        engine: str = "sandbox",
        host: str = "127.0.0.1",
        api_key: str | None = None,
        start_timeout: float = 30.0,
        defaults: Mapping[str, str] = QUICK_SETTINGS,
        **env: str | None,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "zapmux", "serve", "--engine", engine, "--host", host]
        self.argv += ["--port", str(self.port), *args]
        self.env = server_env(root, defaults, **{"ZAPMUX_API_KEY": api_key, **env})
        self.headers = {"X-Api-Key": api_key} if api_key else {}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None
        super().__init__(httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=15))

    @property
    def blocking(self) -> BlockingSteps:
        """The tenant steps for synchronous tests."""
        return BlockingSteps(self.url, self.headers)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        """The log of the latest start."""
        return self.root / f"zapmux-{self.starts}.log"

    # --- synchronous: for sync tests, and run in a thread by the async ones ------------
    def start_sync(self) -> None:
        """Start the process and wait until it answers /health."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._log = self.log_path.open("wb")  # a file, not a pipe: it never fills up
        self.proc = subprocess.Popen(
            self.argv, cwd=self.root, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.start_timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop_sync()
                raise AssertionError(f"zapmux did not answer /health:\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"zapmux exited {self.proc.returncode}:\n{self.output()[-4000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill_sync(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is cut."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self._reap(10)

    def stop_sync(self) -> None:
        """SIGTERM, as an operator stops it; SIGKILL if it is not gone within 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        self.start_sync()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_sync()

    # --- async: the same, off the event loop (a receiver in it keeps answering) -------
    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def kill(self) -> None:
        await asyncio.to_thread(self.kill_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    async def close(self) -> None:
        await self.stop()
        await self.http.aclose()

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def output(self) -> str:
        """Everything every start has logged, in order."""
        logs = sorted(self.root.glob("zapmux-*.log"), key=lambda p: int(p.stem.split("-")[1]))
        return "".join(path.read_text(errors="replace") for path in logs)


def signature_ok(hit: Received, secret: str, max_skew_s: float = 300) -> bool:
    """What a receiver does: recompute the HMAC of "<timestamp>.<body>", check freshness."""
    timestamp = hit.headers.get("X-Zapmux-Timestamp", "")
    given = hit.headers.get("X-Zapmux-Signature", "")
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + hit.body, hashlib.sha256)
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < max_skew_s
    return fresh and hmac.compare_digest(given, "sha256=" + mac.hexdigest())
