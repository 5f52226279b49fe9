"""Tenant lifecycle on the sandbox: QR policy, reconnects, permanent ends, restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import LiveServer, make_settings, wait_for


async def _qr(server: LiveServer, tenant_id: str) -> dict:
    response = await server.http.get(f"/tenants/{tenant_id}/qr")
    return response.json() if response.status_code == 200 and response.json().get("qr") else {}


async def test_qr_rotates_and_an_old_code_is_410(tmp_path: Path) -> None:
    async with LiveServer(make_settings(tmp_path, sandbox_qr_seconds=0.4)) as server:
        await server.http.post("/tenants", json={"tenantId": "rot"})
        first = await wait_for(lambda: _qr(server, "rot"), what="first code")
        assert first["index"] == 1
        # the first code lives 3×N seconds, the next ones N
        assert first["expires_at"] - time.time() == pytest.approx(1.2, abs=0.3)

        async def rotated() -> dict:
            current = await _qr(server, "rot")
            return current if current.get("qr") not in (None, first["qr"]) else {}

        second = await wait_for(rotated, timeout=3, what="a rotated code")
        assert second["index"] == 2
        old = await server.http.post(
            "/sandbox/scan", json={"qr": first["qr"], "phone": "5511988887777"}
        )
        assert old.status_code == 410 and old.json()["error"]["code"] == "qr_expired"
        assert (await server.status("rot"))["status"] == "awaiting_qr"
        unknown = await server.http.post(
            "/sandbox/scan", json={"qr": "2@never", "phone": "5511988887777"}
        )
        assert unknown.status_code == 404


async def test_qr_timeout_stays_until_asked(tmp_path: Path) -> None:
    async with LiveServer(make_settings(tmp_path, sandbox_qr_seconds=0.2)) as server:
        await server.http.post("/tenants", json={"tenantId": "late"})
        # 6 codes: 0.6 s + 5 × 0.2 s, then qr_timeout
        timed_out = await server.wait_status("late", "qr_timeout", timeout=5)
        assert timed_out["last_error"]
        since = timed_out["since"]
        await _sleep(1.0)
        still = await server.status("late")
        assert still["status"] == "qr_timeout" and still["since"] == since  # no loop
        assert server.gateway.supervisor.runners["late"].session is None
        # asking for the QR again starts a new pairing
        again = await wait_for(lambda: _qr(server, "late"), what="a new code")
        assert again["index"] == 1


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_network_down_reconnects_with_backoff_after_network_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, reconnect_base_s=0.3, reconnect_cap_s=0.6)
    async with LiveServer(settings) as server:
        await server.create_paired("net")
        fault = await server.http.post("/sandbox/tenants/net/fault", json={"kind": "network_down"})
        assert fault.status_code == 200
        down = await server.wait_status("net", "reconnecting")
        assert down["next_retry_at"] > time.time() - 0.1
        assert "network" in down["last_error"]

        async def retried_twice() -> bool:
            return (await server.status("net"))["reconnect_attempts"] >= 2

        await wait_for(retried_twice, timeout=5, what="a second failed attempt")
        assert (await server.status("net"))["status"] in {"reconnecting", "connecting"}
        await server.http.post("/sandbox/tenants/net/fault", json={"kind": "network_up"})
        up = await server.wait_status("net", "connected", timeout=5)
        assert up["last_error"] is None and up["next_retry_at"] is None
        await _sleep(0.5)
        assert (await server.status("net"))["since"] == up["since"]  # it stays connected


async def test_a_transient_disconnect_reconnects(server: LiveServer) -> None:
    await server.create_paired("blip")
    before = await server.status("blip")
    await server.http.post("/sandbox/tenants/blip/fault", json={"kind": "disconnect"})

    async def reconnected() -> dict | None:
        now = await server.status("blip")
        return now if now["status"] == "connected" and now["since"] != before["since"] else None

    after = await wait_for(reconnected, what="a new connection")
    assert after["reconnect_attempts"] == 1 and after["last_error"] is None


@pytest.mark.parametrize(
    ("kind", "status"), [("logout", "logged_out"), ("replace", "replaced"), ("ban", "banned")]
)
async def test_permanent_ends_never_retry(tmp_path: Path, kind: str, status: str) -> None:
    async with LiveServer(make_settings(tmp_path)) as server:
        await server.create_paired("perm")
        await server.http.post("/sandbox/tenants/perm/fault", json={"kind": kind})
        ended = await server.wait_status("perm", status)
        await _sleep(0.8)  # well past the backoff's cap in these settings
        after = await server.status("perm")
        assert after["status"] == status and after["since"] == ended["since"]
        assert after["next_retry_at"] is None and after["last_error"]
        sent = await server.http.post("/send/perm", json={"phone": "5511999999999", "message": "x"})
        assert sent.status_code == 409 and sent.json()["error"]["code"] == "tenant_not_connected"
        assert (await server.gateway.engine.is_paired("perm")) is (kind != "logout")


async def test_restart_resumes_paired_tenants_and_leaves_unpaired_idle(tmp_path: Path) -> None:
    async with LiveServer(make_settings(tmp_path)) as server:
        await server.create_paired("paired")
        await server.http.post("/tenants", json={"tenantId": "unpaired"})
        await server.create_paired("stopped", phone="5511988880002")
        await server.http.post("/tenants/stopped/stop")
    async with LiveServer(make_settings(tmp_path)) as server:
        await server.wait_status("paired", "connected")
        idle = await server.status("unpaired")
        assert idle["status"] == "stopped"
        assert server.gateway.supervisor.runners["unpaired"].session is None
        assert (await server.status("stopped"))["status"] == "stopped"


async def test_stop_start_and_logout_routes(server: LiveServer) -> None:
    await server.create_paired("ops")
    stopped = await server.http.post("/tenants/ops/stop")
    assert stopped.json()["status"] == "stopped"
    assert (
        await server.http.post("/send/ops", json={"phone": "5511999999999", "message": "x"})
    ).status_code == 409
    started = await server.http.post("/tenants/ops/start")
    assert started.status_code == 200
    await server.wait_status("ops", "connected")
    out = await server.http.post("/tenants/ops/logout")
    assert out.json()["status"] == "logged_out"
    assert not await server.gateway.engine.is_paired("ops")


async def test_pair_code_login(server: LiveServer) -> None:
    await server.http.post("/tenants", json={"tenantId": "code"})
    asked = await server.http.post("/tenants/code/pair-code", json={"phone": "5511977776666"})
    assert asked.status_code == 200, asked.text
    code = asked.json()["code"]
    assert len(code) == 9 and code[4] == "-"
    wrong = await server.http.post("/sandbox/pair", json={"code": code, "phone": "5511900000000"})
    assert wrong.status_code == 409
    asked = await server.http.post("/tenants/code/pair-code", json={"phone": "5511977776666"})
    paired = await server.http.post(
        "/sandbox/pair", json={"code": asked.json()["code"], "phone": "5511977776666"}
    )
    assert paired.status_code == 200
    connected = await server.wait_status("code", "connected")
    assert connected["phone"] == "5511977776666"


async def test_send_while_reconnecting_is_queued_then_sent(tmp_path: Path) -> None:
    async with LiveServer(
        make_settings(tmp_path, reconnect_base_s=0.2, reconnect_cap_s=0.3)
    ) as server:
        await server.create_paired("q")
        await server.http.post("/sandbox/tenants/q/fault", json={"kind": "network_down"})
        await server.wait_status("q", "reconnecting")
        queued = await server.http.post(
            "/send/q", json={"phone": "5511999999999", "message": "espera"}
        )
        assert queued.status_code == 202 and queued.json()["status"] == "queued"
        await server.http.post("/sandbox/tenants/q/fault", json={"kind": "network_up"})

        async def arrived() -> list:
            body = (await server.http.get("/sandbox/phones/5511999999999/messages")).json()
            return body["messages"]

        messages = await wait_for(arrived, what="the queued message")
        assert messages[0]["text"] == "espera"
        assert messages[0]["message_id"] == queued.json()["message_id"]


async def test_a_permanent_end_refuses_pairing_until_a_person_starts_it(server: LiveServer) -> None:
    await server.create_paired("taken")
    qr = await server.http.get("/tenants/taken/qr")
    assert qr.status_code == 200 and qr.json()["status"] == "connected" and qr.json()["qr"] is None
    code = await server.http.post("/tenants/taken/pair-code", json={"phone": "5511977776666"})
    assert code.status_code == 409 and code.json()["error"]["code"] == "already_paired"
    await server.http.post("/sandbox/tenants/taken/fault", json={"kind": "disconnect"})

    async def retried() -> dict | None:
        now = await server.status("taken")
        return now if now["status"] == "connected" and now["reconnect_attempts"] else None

    await wait_for(retried, what="a reconnect")
    await server.http.post("/sandbox/tenants/taken/fault", json={"kind": "replace"})
    await server.wait_status("taken", "replaced")
    refused = await server.http.get("/tenants/taken/qr")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "tenant_not_pairable"
    assert (await server.http.post("/tenants/taken/start")).status_code == 200
    again = await server.wait_status("taken", "connected")
    # a person asked: the end and its retry counter are cleared
    assert again["last_error"] is None and again["reconnect_attempts"] == 0
