"""The dashboard at ``GET /`` in a real browser (Debian's Chromium driven by Playwright),
against a real zapmux server with the sandbox engine: what an operator does, end to end.

Set ``ZAPMUX_UPDATE_SCREENSHOT=1`` to rewrite ``docs/dashboard.png`` (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Dialog, Locator, Page, expect

if TYPE_CHECKING:
    from tests.browser.conftest import Server, StartServer

PHONE = "5511987654321"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
# Read at import: tests/conftest.py clears every ZAPMUX_* variable before each test.
UPDATE_SCREENSHOT = os.environ.get("ZAPMUX_UPDATE_SCREENSHOT") == "1"
PNG_DATA_URL = re.compile(r"^data:image/png;base64,")
PAIR_CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")
LIVE_TIMEOUT_MS = 15_000


def card(page: Page, tenant_id: str) -> Locator:
    return page.locator(f'.card[data-tenant-id="{tenant_id}"]')


def create_through_form(page: Page, tenant_id: str) -> Locator:
    page.fill("#create-id", tenant_id)
    page.click("#create-form button[type=submit]")
    return card(page, tenant_id)


def expect_status(tenant: Locator, status: str, timeout: int = LIVE_TIMEOUT_MS) -> None:
    expect(tenant).to_have_attribute("data-status", status, timeout=timeout)


def expect_qr_shown(tenant: Locator) -> Locator:
    image = tenant.locator("img.qr-image")
    expect(image).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(image).to_have_attribute("src", PNG_DATA_URL)
    return image


def mark_no_reload(page: Page) -> None:
    """A flag that a reload would erase: the test proves the page updated by itself."""
    page.evaluate("window.__sameDocument = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_create_scan_and_see_connected_live(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")
    mark_no_reload(page)

    tenant = create_through_form(page, "shop-1")
    expect_status(tenant, "awaiting_qr")
    image = expect_qr_shown(tenant)
    expect(image).to_have_attribute("data-qr", server.current_qr("shop-1"))

    server.scan("shop-1", PHONE)

    expect_status(tenant, "connected")
    expect(tenant.locator('[data-field="status"]')).to_have_text("Connected")
    expect(tenant.locator('[data-field="phone"]')).to_have_text(f"+{PHONE}")
    expect(image).to_be_hidden()
    assert_not_reloaded(page)

    create_through_form(page, "shop-1")  # a second time: the server's refusal is shown
    expect(page.locator("#notice")).to_have_attribute("data-kind", "error")
    expect(page.locator("#notice")).to_contain_text("shop-1")


def test_qr_image_follows_the_rotation(page: Page, server: Server) -> None:
    server.create_tenant("rotating")
    page.goto(server.url + "/")
    image = expect_qr_shown(card(page, "rotating"))
    first = image.get_attribute("src")

    # The first code lives 3×QR_SECONDS; the page must show the next one without help.
    expect(image).not_to_have_attribute("src", first or "", timeout=25_000)
    expect(image).to_have_attribute("data-qr", server.current_qr("rotating"))


def test_follows_by_polling_when_the_live_stream_is_blocked(page: Page, server: Server) -> None:
    page.route("**/events*", lambda route: route.abort())
    page.goto(server.url + "/")
    expect(page.locator("#live")).to_have_attribute("data-mode", "polling")
    mark_no_reload(page)

    tenant = create_through_form(page, "polled")
    expect_qr_shown(tenant)
    server.scan("polled", PHONE)

    expect_status(tenant, "connected")
    assert_not_reloaded(page)


def test_pairing_code_then_logout_start_and_delete(page: Page, server: Server) -> None:
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of logout, delete
    server.create_tenant("by-code")
    page.goto(server.url + "/")
    tenant = card(page, "by-code")
    expect_status(tenant, "awaiting_qr")

    code = ask_pairing_code(tenant, PHONE)
    response = server.api("POST", "/sandbox/pair", json={"code": code, "phone": PHONE})
    assert response.status_code == 200, response.text
    expect_status(tenant, "connected")

    tenant.locator('[data-action="logout"]').click()
    expect_status(tenant, "logged_out")
    tenant.locator('[data-action="start"]').click()
    expect_status(tenant, "awaiting_qr")
    expect_qr_shown(tenant)

    tenant.locator('[data-action="delete"]').click()
    expect(tenant).to_have_count(0)
    assert "by-code" not in tenant_ids(server)


def test_restart_reconnects_a_paired_tenant(page: Page, server: Server) -> None:
    server.create_tenant("restarted")
    server.scan("restarted", "5521999990000")
    page.goto(server.url + "/")
    tenant = card(page, "restarted")
    expect_status(tenant, "connected")

    tenant.locator('[data-action="restart"]').click()
    expect(page.locator("#notice")).to_contain_text("restarting")
    expect_status(tenant, "connected")


ADMIN_KEY = "s3cret-admin-key"


@pytest.fixture(scope="module")
def secured_server(
    start_server: StartServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with start_server(tmp_path_factory.mktemp("secured"), api_key=ADMIN_KEY) as server:
        yield server


def answer_prompts(page: Page, answers: list[str]) -> list[str]:
    """Answers the page's prompts in turn; returns what they asked, as they come."""
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept(answers[min(len(asked), len(answers)) - 1])

    page.on("dialog", answer)
    return asked


def test_asks_for_the_admin_key_once_and_keeps_it(page: Page, secured_server: Server) -> None:
    asked = answer_prompts(page, [ADMIN_KEY])
    page.goto(secured_server.url + "/")
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")
    tenant = create_through_form(page, "secured-1")
    expect_qr_shown(tenant)
    assert len(asked) == 1, asked
    assert "admin key" in asked[0]

    page.reload()  # the browser remembers the key: no second prompt
    expect_qr_shown(card(page, "secured-1"))
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")
    assert len(asked) == 1, asked


def test_asks_again_when_the_key_is_wrong(page: Page, secured_server: Server) -> None:
    asked = answer_prompts(page, ["not-the-key", ADMIN_KEY])
    page.goto(secured_server.url + "/")
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")
    expect(page.locator("#auth-needed")).to_be_hidden()
    assert len(asked) == 2, asked
    assert "not accepted" in asked[1]


def test_screenshot_with_a_connected_and_an_awaiting_tenant(
    page: Page, start_server: StartServer, tmp_path: Path
) -> None:
    with start_server(tmp_path / "shot") as server:
        server.create_tenant("clinica-centro")
        server.scan("clinica-centro", PHONE)
        server.create_tenant("salao-bela-vista")
        page.goto(server.url + "/")
        expect_status(card(page, "clinica-centro"), "connected")
        expect_qr_shown(card(page, "salao-bela-vista"))
        time.sleep(0.5)  # let the pulse animation and fonts settle for a stable picture

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if UPDATE_SCREENSHOT:
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
        page.goto("about:blank")  # an open event stream holds the server's shutdown ~10 s


def ask_pairing_code(tenant: Locator, phone: str) -> str:
    tenant.locator("details.pairing summary").click()
    tenant.locator(".pair-form input[name=phone]").fill(phone)
    tenant.locator(".pair-form button").click()
    shown = tenant.locator('[data-field="pair_code"]')
    expect(shown).to_have_text(PAIR_CODE, timeout=LIVE_TIMEOUT_MS)
    return shown.inner_text()


def tenant_ids(server: Server) -> list[str]:
    return [t["tenant_id"] for t in server.api("GET", "/tenants").json()["tenants"]]
