"""Errors in words a person can act on: a dial that never reached WhatsApp, and the
send refusals WhatsApp gives (463, rate-overlimit), with whatsmeow's own texts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import LiveServer, make_settings
from zapmux import events as ev
from zapmux.client.doctor import Level, diagnose_tenant
from zapmux.config import Settings
from zapmux.engines.whatsmeow import mapping
from zapmux.engines.whatsmeow.client import SendThrottle, WhatsmeowEngine
from zapmux.errors import SendLater

NO_ROUTE = "this server cannot reach WhatsApp (internet, DNS or ZAPMUX_WHATSMEOW_PROXY)"
DNS = (
    "failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send "
    'handshake request: Get "https://web.whatsapp.com/ws/chat": dial tcp: lookup '
    "web.whatsapp.com on 127.0.0.53:53: no such host"
)


@pytest.mark.parametrize(
    "raw",
    [
        DNS,
        "failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send "
        'handshake request: Get "https://web.whatsapp.com/ws/chat": proxyconnect tcp: '
        "dial tcp 127.0.0.1:3128: connect: connection refused",
        "failed to dial whatsapp web websocket: dial tcp 157.240.0.53:443: connect: "
        "network is unreachable",
    ],
)
def test_a_dial_that_never_reached_whatsapp_is_said_in_words(raw: str) -> None:
    assert mapping.dial_error(raw) == ev.Disconnected(reason=NO_ROUTE, detail=raw)


def test_other_dial_errors_stay_as_whatsmeow_said() -> None:
    raw = "websocket: close 1006 (abnormal closure)"
    assert mapping.dial_error(raw) == ev.Disconnected(reason=raw)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("server returned error 463", "new_contact_restricted"),
        ("failed to get privacy token: info query returned status 429: rate-overlimit",
         "rate_limited"),
        ("server returned error 429", "rate_limited"),
        ("server returned error 479", "engine"),
    ],
)  # fmt: skip
def test_send_failures_map_to_stable_kinds(raw: str, kind: str) -> None:
    got, message = mapping.send_failure(raw)
    assert got == kind
    assert message == raw if kind == "engine" else "WhatsApp" in message


def test_the_send_throttle_doubles_then_resets() -> None:
    throttle = SendThrottle()
    throttle.check(0.0)  # nothing refused yet
    assert [throttle.refused(0.0) for _ in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    with pytest.raises(SendLater, match="rate-overlimit") as paused:
        throttle.check(299.0)
    assert paused.value.retry_after == 1.0  # the queue waits for the rest of the pause
    throttle.check(300.0)
    throttle.passed()
    assert throttle.refused(0.0) == 5


async def test_a_real_workers_failed_dial_reaches_the_tenant_in_words(
    settings: Settings, refused_proxy: str
) -> None:
    engine = WhatsmeowEngine(settings, proxy=refused_proxy)
    got: asyncio.Queue[ev.Event] = asyncio.Queue()
    try:
        await engine.open_session("semrede", got.put).connect()
        event = await asyncio.wait_for(got.get(), 20)
    finally:
        await engine.aclose()
    assert isinstance(event, ev.Disconnected) and event.reason == NO_ROUTE
    assert event.detail and "failed to dial whatsapp web websocket" in event.detail
    assert "connection refused" in event.detail


async def test_status_and_doctor_show_the_words_and_keep_the_raw_error(
    tmp_path: Path, refused_proxy: str
) -> None:
    settings = make_settings(
        tmp_path, engine="whatsmeow", whatsmeow_proxy=refused_proxy,
        reconnect_base_s=30.0, reconnect_cap_s=30.0,
    )  # fmt: skip
    async with LiveServer(settings) as live:
        assert (await live.http.post("/tenants", json={"tenantId": "loja"})).status_code == 201
        status: dict[str, object] = {}
        async with asyncio.timeout(30):
            while status.get("status") != "reconnecting":
                await asyncio.sleep(0.1)
                status = (await live.http.get("/tenants/loja/status")).json()
        [connection] = (await live.http.get("/status")).json()["connections"]
    assert status["last_error"] == NO_ROUTE == connection["last_error"]
    detail = str(status["detail"])
    assert "failed to dial" in detail and "connection refused" in detail
    assert connection["detail"] == detail
    finding = diagnose_tenant(status)
    assert finding.level is Level.PROBLEM
    assert NO_ROUTE in finding.text and detail in finding.text
