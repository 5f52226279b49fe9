"""The engine seam's NotConnected, as a client sees it: the API's one 409."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from zapmux.api.errors import install
from zapmux.engines.base import NotConnected


async def test_an_engine_without_a_connection_is_a_409_tenant_not_connected() -> None:
    app = FastAPI()
    install(app)

    @app.get("/check")
    async def check() -> None:
        raise NotConnected("the tenant is not connected")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://zapmux") as client:
        answer = await client.get("/check")
    assert answer.status_code == 409
    assert answer.json() == {
        "success": False,
        "error": {"code": "tenant_not_connected", "message": "the tenant is not connected"},
    }
