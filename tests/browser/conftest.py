"""A real zapmux server (sandbox engine, own process) and Debian's Chromium for the tests.

Playwright's own browser download cannot work here (no internet), so the tests drive the
system Chromium: ``$ZAPMUX_CHROMIUM``, else ``/usr/bin/chromium``
(``.ci/install-browser.sh`` installs it). A missing browser fails the tests: a skipped
browser test would let a broken dashboard through CI unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.helpers import free_port

# Read at import: tests/conftest.py clears every ZAPMUX_* variable before each test.
CHROMIUM = os.environ.get("ZAPMUX_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing may try the internet: there is none, and waiting for it slows every start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QR_SECONDS = 5  # the first QR code lives 15 s, the next ones 5 s: rotation is seen quickly
START_TIMEOUT_S = 90.0  # a server restoring 1,000 tenants on a loaded machine takes a while


@dataclass
class Server:
    """A running zapmux server and a client for its API."""

    url: str
    api_key: str | None
    log_path: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Api-Key": self.api_key} if self.api_key else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def create_tenant(self, tenant_id: str) -> None:
        response = self.api("POST", "/tenants", json={"tenant_id": tenant_id})
        assert response.status_code == 201, response.text

    def current_qr(self, tenant_id: str, within_s: float = 15.0) -> str:
        """The raw QR code the tenant shows now (waits while it is being prepared)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            response = self.api("GET", f"/tenants/{tenant_id}/qr")
            if response.status_code == 200 and response.json().get("qr"):
                return str(response.json()["qr"])
            time.sleep(0.2)
        raise AssertionError(f"{tenant_id} showed no QR code within {within_s} s")

    def scan(self, tenant_id: str, phone: str) -> None:
        """A sandbox phone scans the tenant's current QR code."""
        qr = self.current_qr(tenant_id)
        response = self.api("POST", "/sandbox/scan", json={"qr": qr, "phone": phone})
        assert response.status_code == 200, response.text

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def server_env(home: Path, api_key: str | None) -> dict[str, str]:
    """The server's environment: the developer's own zapmux settings must not leak in."""
    seed_aliases = {"PORT", "AUTH_DIR", "FLASK_URL"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ZAPMUX_") and k not in seed_aliases
    }
    env |= {
        "ZAPMUX_DATA_DIR": str(home / "data"),
        "ZAPMUX_AUTH_DIR": str(home / "auth"),
        "ZAPMUX_SANDBOX_QR_SECONDS": str(QR_SECONDS),
    }
    if api_key:
        env["ZAPMUX_API_KEY"] = api_key
    return env


def wait_until_healthy(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"zapmux exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"zapmux did not answer /health in {START_TIMEOUT_S} s:\n{server.log_tail()}"
    )


@contextmanager
def run_server(home: Path, api_key: str | None = None) -> Iterator[Server]:
    """Starts ``zapmux serve --engine sandbox`` on a free port; stops it afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", api_key, home / "server.log")
    command = [sys.executable, "-m", "zapmux", "serve", "--engine", "sandbox", "--port", str(port)]
    with server.log_path.open("wb") as log:
        # cwd is the temporary home so that no .env file of the checkout is read.
        process = subprocess.Popen(
            command, cwd=home, env=server_env(home, api_key), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until_healthy(server, process)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Install it with .ci/install-browser.sh "
            "(apt-get install -y chromium) or point ZAPMUX_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    return CHROMIUM


StartServer = Callable[..., AbstractContextManager[Server]]


@pytest.fixture(scope="session")
def start_server() -> StartServer:
    """``with start_server(home, api_key=None) as server:`` for a test that needs its own."""
    return run_server


# Module scope, not session: Playwright's sync API keeps an asyncio loop running while it
# is open, and pytest-asyncio cannot run the async tests of other modules meanwhile.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One open (no admin key) server shared by a module's tests; each uses its own tenants."""
    with run_server(tmp_path_factory.mktemp("zapmux")) as server:
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (empty localStorage) per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"
