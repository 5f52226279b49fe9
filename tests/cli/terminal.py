"""The CLI as an operator runs it, against a zapmux server process, and a webhook receiver.

The CLI is synchronous and talks HTTP, so the server runs in a process of its own
(``tests.process.ServerProcess``), as an operator's would; the tests are synchronous too,
and take the tenant steps through ``BlockingSteps``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from tests.helpers import BlockingSteps
from tests.process import ServerProcess, clean_environ
from zapmux.cli import app

API_KEY = "cli-test-key"


class CliServer(BlockingSteps):
    """A running zapmux (sandbox engine), the CLI pointed at it, and a client for its API."""

    def __init__(self, process: ServerProcess, flask_url: str) -> None:
        super().__init__(process.url, process.headers)
        self.process = process
        self.flask_url = flask_url
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=10)

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
        return subprocess.Popen(
            [sys.executable, "-m", "zapmux", *args],
            env=clean_environ(ZAPMUX_URL=self.url, ZAPMUX_API_KEY=API_KEY),
            cwd=self.process.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        self.http.close()
        self.process.stop_sync()


def start_server(workdir: Path, flask_url: str, **env: str) -> CliServer:
    """Start `zapmux serve --engine sandbox` in workdir and wait until it answers."""
    process = ServerProcess(
        workdir,
        api_key=API_KEY,
        ZAPMUX_FLASK_URL=flask_url,
        ZAPMUX_DELIVERY_BACKOFF_BASE_S="0.2",
        **env,
    )
    process.start_sync()
    return CliServer(process, flask_url)


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
