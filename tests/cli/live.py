"""A real `zapmux serve --engine sandbox` process, and a webhook receiver, for CLI tests.

The CLI is synchronous and talks HTTP, so the server runs as a separate process, as an
operator's would: started on a free port with its own data directory, stopped at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from zapmux.cli import app

API_KEY = "cli-test-key"
#: Variables that would steer a server or the CLI from the developer's environment.
_FOREIGN = ("FLASK_URL", "PORT", "AUTH_DIR")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZAPMUX_") and k not in _FOREIGN}
    return {**env, **extra}


@dataclass
class LiveServer:
    """A running zapmux (sandbox engine), with helpers to drive it through its API."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    flask_url: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, headers={"X-Api-Key": API_KEY}, timeout=10)

    def cli(self, *args: str, input: str | None = None, **env: str) -> Result:
        """Run `zapmux ARGS` in-process against this server."""
        base = {
            "ZAPMUX_URL": self.url,
            "ZAPMUX_API_KEY": API_KEY,
            "ZAPMUX_FLASK_URL": self.flask_url,
            "ZAPMUX_CLIENT_TIMEOUT": "10",
        }
        return CliRunner().invoke(app, list(args), input=input, env={**base, **env})

    def cli_process(self, *args: str) -> subprocess.Popen[str]:
        """Start `zapmux ARGS` as its own process (for commands that run until an event)."""
        env = clean_env(ZAPMUX_URL=self.url, ZAPMUX_API_KEY=API_KEY)
        return subprocess.Popen(
            [sys.executable, "-m", "zapmux", *args],
            env=env,
            cwd=self.log_path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def status(self, tenant_id: str) -> dict[str, Any]:
        response = self.http.get(f"/tenants/{tenant_id}/status")
        response.raise_for_status()
        return dict(response.json())

    def wait_status(self, tenant_id: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(tenant_id)
            if status["status"] in states:
                return status
            assert time.monotonic() < deadline, f"{tenant_id} stuck in {status}"
            time.sleep(0.1)

    def current_qr(self, tenant_id: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/tenants/{tenant_id}/qr")
            if response.status_code == 200 and response.json().get("qr"):
                return str(response.json()["qr"])
            assert time.monotonic() < deadline, f"no QR: {response.status_code} {response.text}"
            time.sleep(0.1)

    def pair(self, tenant_id: str, phone: str) -> None:
        """Create (if needed) and pair a tenant through the sandbox, until connected."""
        created = self.http.post("/tenants", json={"tenantId": tenant_id})
        assert created.status_code in {201, 409}, created.text
        for _ in range(5):  # a code may rotate between reading and scanning it
            scan = self.http.post(
                "/sandbox/scan", json={"qr": self.current_qr(tenant_id), "phone": phone}
            )
            if scan.status_code == 200:
                break
        assert scan.status_code == 200, scan.text
        self.wait_status(tenant_id, "connected")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(workdir: Path, flask_url: str, **env: str) -> LiveServer:
    """Start `zapmux serve --engine sandbox` in workdir and wait for /health."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "ZAPMUX_DATA_DIR": str(workdir / "data"),
        "ZAPMUX_AUTH_DIR": str(workdir / "auth"),
        "ZAPMUX_FLASK_URL": flask_url,
        "ZAPMUX_API_KEY": API_KEY,
        "ZAPMUX_SANDBOX_QR_SECONDS": "20",
        "ZAPMUX_DELIVERY_BACKOFF_BASE_S": "0.2",
        **env,
    }
    log_path = workdir / "zapmux.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "zapmux", "serve", "--engine", "sandbox", "--port", str(port)],
            cwd=workdir,  # no .env file of the developer's
            env=clean_env(**settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path, flask_url)
    _wait_healthy(server)
    return server


def _wait_healthy(server: LiveServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"zapmux exited with {server.process.returncode}:\n{server.log()}")
        try:
            if server.http.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"zapmux did not answer /health in {timeout} s:\n{server.log()}")


class Receiver:
    """A webhook receiver on a free port: answers POSTs with ``status``, records bodies."""

    def __init__(self) -> None:
        self.status = 200
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(200)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.status < 300:
                    receiver.bodies.append(json.loads(body))
                self._answer(receiver.status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
