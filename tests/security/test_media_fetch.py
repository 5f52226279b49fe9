"""Media by URL never reaches private networks unless the operator allows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from tests.helpers import LiveServer, Receiver, make_settings


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/photo.png",
        "http://localhost:{port}/photo.png",
        "http://[::1]:{port}/photo.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/photo.png",
        "http://192.168.1.1/photo.png",
    ],
)
async def test_private_addresses_are_refused(tmp_path: Path, receiver: Receiver, url: str) -> None:
    settings = make_settings(tmp_path, flask_url=receiver.url, media_allow_private=False)
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        response = await server.http.post(
            "/send/acme",
            json={"phone": "5511999999999", "image": {"url": url.format(port=receiver.port)}},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "media_url_not_allowed"
        inbox = (await server.http.get("/sandbox/phones/5511999999999/messages")).json()["messages"]
        assert inbox == []
    assert not [r for r in receiver.received if r.path == "/photo.png"]  # never fetched


async def test_a_redirect_to_a_private_address_is_refused(
    tmp_path: Path, receiver: Receiver
) -> None:
    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    settings = make_settings(tmp_path, flask_url=receiver.url, media_allow_private=False)
    app = web.Application()
    app.router.add_get("/r", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    # the first hop is allowed here only because the test server is the operator's own
    async with LiveServer(settings.model_copy(update={"media_allow_private": True})) as server:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await server.create_paired("acme")
        allowed = await server.http.post(
            "/send/acme",
            json={"phone": "5511999999999", "image": {"url": f"http://127.0.0.1:{port}/r"}},
        )
        # allowed private: the redirect is followed and fails to connect, not refused
        assert allowed.json()["error"]["code"] == "media_fetch_failed"
    await runner.cleanup()
