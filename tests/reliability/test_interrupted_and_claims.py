"""An interrupted send is not a success (issue 14, 6), and a killed node's claimed
deliveries are taken over within the lease (issue 14, 7)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.helpers import LiveServer, Receiver, make_settings, wait_for


async def test_a_send_cut_short_by_a_crash_answers_send_interrupted(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, flask_url=receiver.url)
    body = {"phone": "5511911110009", "message": "talvez"}
    headers = {"Idempotency-Key": "crash-mid-send"}
    async with LiveServer(settings) as server:
        await server.create_paired("acme")

        async def die_while_handing_over(*_args: object) -> object:
            raise SystemExit("killed")  # the row says "sending"; nothing after runs

        session = server.gateway.engine.sessions["acme"]  # type: ignore[attr-defined]
        session.send = die_while_handing_over
        dying = await server.http.post("/send/acme", json=body, headers=headers)
        assert dying.status_code == 500
    async with LiveServer(settings) as server:  # restarted on the same data
        await server.wait_status("acme", "connected")
        retried = await server.http.post("/send/acme", json=body, headers=headers)
        assert retried.status_code == 409, retried.text
        answer = retried.json()
        assert answer["success"] is False and answer["status"] == "failed"
        assert answer["error"]["code"] == "send_interrupted"
        assert "new Idempotency-Key" in answer["error"]["message"]
        logged = await server.http.get(f"/tenants/acme/messages/{answer['message_id']}")
        assert logged.json()["status"] == "failed"
        phone = await server.http.get("/sandbox/phones/5511911110009/messages")
        assert phone.json()["messages"] == []  # at most once: not sent again by itself


async def test_a_claimed_delivery_is_locked_only_for_the_lease(
    tmp_path: Path, receiver: Receiver
) -> None:
    """What a killed node held is claimable again once its lease would have run out."""
    receiver.delay = 5.0  # the POST is in flight while we look
    settings = make_settings(
        tmp_path, flask_url=receiver.url, lease_seconds=10.0, delivery_timeout_s=1.0
    )
    async with LiveServer(settings) as server:
        relay = await server.http.post("/webhook", json={"phone": "5511911110009", "message": "x"})
        assert relay.status_code == 202
        await wait_for(lambda: _busy(receiver), what="the POST in flight")
        [row] = await server.gateway.store.list_deliveries(status="pending")
        assert row.locked_until is not None
        assert row.locked_until - time.time() <= settings.lease_seconds + 0.5


async def _busy(receiver: Receiver) -> bool:
    await asyncio.sleep(0)
    return receiver.busy > 0
