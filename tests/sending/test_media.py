"""Media out (base64 and by URL) and in (to the webhook, fetched back), replies, the cap."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import LiveServer, Receiver, free_port, wait_for
from tests.sending.steps import fault, send, wait_inbox, wait_message_status

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(200)
BIG = os.urandom(300_000)  # larger than one network read


@pytest.fixture
async def files() -> AsyncIterator[str]:
    """A tiny file server: /photo.png and /big.pdf, /missing answers 404."""

    async def photo(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=BIG, content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/photo.png", photo)
    app.router.add_get("/big.pdf", big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_image_by_base64_with_caption(server: LiveServer) -> None:
    await server.create_paired("acme")
    sent = await send(
        server,
        "acme",
        "5511955550001",
        "sua receita",
        image={"base64": b64(PNG), "mimetype": "image/png", "filename": "r.png"},
    )
    assert sent.status_code == 200, sent.text
    got = (await wait_inbox(server, "5511955550001", 1))[0]
    assert got["media_kind"] == "image" and got["media_mimetype"] == "image/png"
    assert got["media_size"] == len(PNG) and got["text"] == "sua receita"
    logged = await wait_message_status(server, "acme", sent.json()["message_id"], "delivered")
    assert logged["message_type"] == "imagem" and logged["has_media"] is True


async def test_document_by_url_arrives_whole(server: LiveServer, files: str) -> None:
    await server.create_paired("acme")
    sent = await send(
        server,
        "acme",
        "5511955550002",
        "",
        document={"url": f"{files}/big.pdf", "filename": "contrato.pdf", "caption": "assine"},
    )
    assert sent.status_code == 200, sent.text
    got = (await wait_inbox(server, "5511955550002", 1))[0]
    assert got["media_kind"] == "document" and got["media_filename"] == "contrato.pdf"
    assert got["media_mimetype"] == "application/pdf" and got["text"] == "assine"
    assert got["media_size"] == len(BIG)


async def test_audio_and_video_by_url(server: LiveServer, files: str) -> None:
    await server.create_paired("acme")
    for kind in ("audio", "video"):
        media = {"url": f"{files}/photo.png", "mimetype": f"{kind}/x-test", "ptt": kind == "audio"}
        sent = await send(server, "acme", "5511955550003", "", **{kind: media})
        assert sent.status_code == 200, sent.text
    got = await wait_inbox(server, "5511955550003", 2)
    assert [m["media_kind"] for m in got] == ["audio", "video"]


async def test_media_url_that_fails_is_a_clear_400(server: LiveServer, files: str) -> None:
    await server.create_paired("acme")
    failed = await send(server, "acme", "5511955550004", "", image={"url": f"{files}/missing"})
    assert failed.status_code == 400
    assert failed.json()["error"]["code"] == "media_fetch_failed"


async def test_media_over_the_cap_is_413(settings_for: Any, receiver: Receiver, files: str) -> None:
    async with LiveServer(settings_for(flask_url=receiver.url, media_max_bytes=100)) as server:
        await server.create_paired("acme")
        by_b64 = await send(server, "acme", "5511955550005", "", image={"base64": b64(PNG)})
        by_url = await send(server, "acme", "5511955550005", "", image={"url": f"{files}/big.pdf"})
        assert by_b64.status_code == by_url.status_code == 413
        assert by_b64.json()["error"]["code"] == "payload_too_large"
        log = (await server.http.get("/tenants/acme/messages")).json()["messages"]
        assert log == []


async def test_queued_media_goes_out_and_is_not_kept(server: LiveServer) -> None:
    await server.create_paired("acme")
    await fault(server, "acme", "network_down")
    await server.wait_status("acme", "reconnecting")
    queued = await send(server, "acme", "5511955550006", "foto", image={"base64": b64(PNG)})
    assert queued.status_code == 202
    await fault(server, "acme", "network_up")
    got = (await wait_inbox(server, "5511955550006", 1))[0]
    assert got["media_size"] == len(PNG)
    await wait_message_status(server, "acme", queued.json()["message_id"], "delivered")
    # the file waited in the store only as long as the message did
    stored = await server.gateway.store.get_message("acme", queued.json()["message_id"])
    assert stored is not None and stored.payload is None


async def test_reply_to_quotes_a_message(server: LiveServer) -> None:
    await server.create_paired("acme")
    quoted = await server.customer_says("5511955550007", "acme", "oi?")
    sent = await send(server, "acme", "5511955550007", "oi!", reply_to=quoted)
    assert sent.status_code == 200
    got = (await wait_inbox(server, "5511955550007", 1))[0]
    assert got["reply_to"] == quoted
    logged = (await server.http.get(f"/tenants/acme/messages/{sent.json()['message_id']}")).json()
    assert logged["reply_to"] == quoted


async def test_incoming_media_reaches_the_webhook_and_can_be_fetched(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("acme")
    media = {"base64": b64(PNG), "mimetype": "image/png", "filename": "foto.png"}
    await server.customer_says("5511955550008", "acme", "olha", media=media, media_kind="image")

    async def webhook() -> dict[str, Any] | None:
        bodies = [r.json for r in receiver.received if r.path == "/webhook/whatsapp"]
        return next((b for b in bodies if b.get("message_type") == "imagem"), None)

    payload = await wait_for(webhook, what="the image's webhook")
    assert payload["phone"] == "5511955550008" and payload["message"] == "olha"
    assert payload["media"]["mimetype"] == "image/png" and payload["media"]["size"] == len(PNG)
    fetched = await server.http.get(payload["media"]["url"])
    assert fetched.status_code == 200
    assert fetched.content == PNG and fetched.headers["content-type"] == "image/png"
    logged = await server.http.get(f"/tenants/acme/messages/{payload['message_id']}")
    assert logged.json()["direction"] == "in" and logged.json()["message_type"] == "imagem"


async def test_media_of_a_text_message_is_404(server: LiveServer) -> None:
    await server.create_paired("acme")
    sent = await send(server, "acme", "5511955550009", "só texto")
    missing = await server.http.get(f"/tenants/acme/messages/{sent.json()['message_id']}/media")
    assert missing.status_code == 404
