"""Idempotency-Key: a repeated send returns the first answer and sends once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers import LiveServer, Receiver, make_settings
from tests.sending.steps import inbox, send, wait_inbox


async def test_two_sends_with_one_key_send_once(server: LiveServer) -> None:
    await server.create_paired("acme")
    first = await send(server, "acme", "5511911110001", "Lembrete 10h", key="rem-1")
    again = await send(server, "acme", "5511911110001", "Lembrete 10h", key="rem-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    phone = await inbox(server, "5511911110001")
    assert [m["message_id"] for m in phone] == [first.json()["message_id"]]


async def test_concurrent_sends_with_one_key_send_once(server: LiveServer) -> None:
    await server.create_paired("acme")
    answers = await asyncio.gather(
        *(send(server, "acme", "5511911110002", "só uma vez", key="k") for _ in range(5))
    )
    assert {a.json()["message_id"] for a in answers} == {answers[0].json()["message_id"]}
    assert len(await inbox(server, "5511911110002")) == 1


async def test_same_key_different_body_is_409(server: LiveServer) -> None:
    await server.create_paired("acme")
    assert (await send(server, "acme", "5511911110003", "um", key="k2")).status_code == 200
    other = await send(server, "acme", "5511911110003", "dois", key="k2")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(await inbox(server, "5511911110003")) == 1


async def test_keys_are_per_tenant(server: LiveServer) -> None:
    await server.create_paired("a", phone="5511988880001")
    await server.create_paired("b", phone="5511988880002")
    one = await send(server, "a", "5511911110004", "oi", key="same")
    two = await send(server, "b", "5511911110004", "oi", key="same")
    assert one.json()["message_id"] != two.json()["message_id"]
    assert len(await inbox(server, "5511911110004")) == 2


async def test_a_failed_first_try_does_not_poison_the_key(server: LiveServer) -> None:
    await server.create_paired("acme")
    await server.http.post("/sandbox/phones", json={"phone": "5511911110005", "on_whatsapp": False})
    refused = await send(server, "acme", "5511911110005", "oi", key="k3")
    assert refused.status_code == 422
    await server.http.post("/sandbox/phones", json={"phone": "5511911110005", "on_whatsapp": True})
    # the JID cache remembers the first answer: a check refreshes it
    await server.http.post("/tenants/acme/check", json={"phones": ["5511911110005"]})
    retried = await send(server, "acme", "5511911110005", "oi", key="k3")
    assert retried.status_code == 200, retried.text
    assert len(await inbox(server, "5511911110005")) == 1


async def test_the_key_holds_across_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        await server.create_paired("acme")
        first = await send(server, "acme", "5511911110006", "antes", key="boot")
        assert first.status_code == 200
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        await server.wait_status("acme", "connected")
        again = await send(server, "acme", "5511911110006", "antes", key="boot")
        assert again.status_code == 200
        assert again.json()["message_id"] == first.json()["message_id"]
        await wait_inbox(server, "5511911110006", 1)
        assert len(await inbox(server, "5511911110006")) == 1


async def test_key_locks_are_forgotten_after_use(server: LiveServer) -> None:
    """A busy server sees millions of keys: none may stay in memory after its request."""
    await server.create_paired("acme")
    await server.http.post("/sandbox/phones", json={"phone": "5511911110007", "on_whatsapp": False})
    await asyncio.gather(
        *(send(server, "acme", "5511911110008", f"m{n}", key=f"k{n}") for n in range(10)),
        send(server, "acme", "5511911110007", "falha", key="fails"),
        send(server, "acme", "5511911110008", "m0", key="k0"),
    )
    assert len(server.gateway.sender.keys) == 0
    assert len(server.gateway.sender.lanes) == 0


async def test_a_key_interrupted_mid_send_never_sends_twice(
    tmp_path: Path, receiver: Receiver
) -> None:
    """kill -9 once the message went out and its outcome is stored, before the client
    has the answer: the key's answer was stored with the outcome (one transaction), so
    the retry finds the message instead of sending it again."""
    settings = make_settings(tmp_path, flask_url=receiver.url)
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        store = server.gateway.store
        real_mark_sent = store.mark_sent

        async def die_once_recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
            await real_mark_sent(*args, **kwargs)
            raise SystemExit("killed")  # nothing after this runs, as with kill -9

        store.mark_sent = die_once_recorded  # type: ignore[method-assign]
        dying = await send(server, "acme", "5511911110009", "uma vez só", key="crash-1")
        assert dying.status_code == 500
    async with LiveServer(settings) as server:  # restarted on the same data
        retried = await send(server, "acme", "5511911110009", "uma vez só", key="crash-1")
        assert retried.status_code == 200, retried.text
        phone = await inbox(server, "5511911110009")
        assert [m["message_id"] for m in phone] == [retried.json()["message_id"]]


async def test_a_key_given_twice_counts_as_its_first_on_every_path(server: LiveServer) -> None:
    """The front door (api/hot.py) and the full route read the same header the same way."""
    await server.create_paired("acme")
    body = {"phone": "5511911110009", "message": "duas chaves"}
    twice = [("Idempotency-Key", "primeira"), ("Idempotency-Key", "segunda")]
    fast = await server.http.post("/send/acme", json=body, headers=twice)
    # a query string takes the full route
    full = await server.http.post("/send/acme?via=stack", json=body, headers=twice)
    alone = await server.http.post("/send/acme", json=body, headers={"Idempotency-Key": "primeira"})
    assert fast.status_code == full.status_code == alone.status_code == 200
    assert fast.json()["message_id"] == full.json()["message_id"] == alone.json()["message_id"]
    assert len(await inbox(server, "5511911110009")) == 1
