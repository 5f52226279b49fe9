"""A real zapmux server (sandbox engine, own process: ``tests.process``) and Debian's Chromium for the tests.

Playwright's own browser download cannot work here (no internet), so the tests drive the
system Chromium: ``$ZAPMUX_CHROMIUM``, else ``/usr/bin/chromium``
(``.ci/install-browser.sh`` installs it). A missing browser fails the tests: a skipped
browser test would let a broken dashboard through CI unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.process import ServerProcess

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


class Server:
    """A running zapmux server (its own process) and a client for its API."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        self.url = process.url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.process.headers
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def create_tenant(self, tenant_id: str) -> None:
        response = self.api("POST", "/tenants", json={"tenant_id": tenant_id})
        assert response.status_code == 201, response.text

    def current_qr(self, tenant_id: str) -> str:
        """The raw QR code the tenant shows now (waits while it is being prepared)."""
        return self.process.blocking.current_qr(tenant_id)

    def scan(self, tenant_id: str, phone: str) -> None:
        """A sandbox phone scans the tenant's current QR code."""
        self.process.blocking.scan(tenant_id, phone)


@contextmanager
def run_server(home: Path, api_key: str | None = None) -> Iterator[Server]:
    """Starts ``zapmux serve --engine sandbox`` on a free port; stops it afterwards."""
    process = ServerProcess(
        home,
        api_key=api_key,
        start_timeout=START_TIMEOUT_S,
        ZAPMUX_SANDBOX_QR_SECONDS=str(QR_SECONDS),
    )
    with process:
        yield Server(process)


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
