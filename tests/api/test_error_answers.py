"""Errors as a client sees them: the engine seam's NotConnected (the API's one 409),
and an unexpected failure (a 500 in the error shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import LiveServer, make_settings
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


@pytest.mark.parametrize("route", ["/send/shop", "/send/shop?via=stack"])
async def test_a_send_that_fails_unexpectedly_is_a_500_in_the_error_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    # Served by the front door (api/hot.py) or, with a query string, by the whole stack:
    # the same answer either way.
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    async with LiveServer(make_settings(tmp_path)) as server:
        await server.create_paired("shop")
        monkeypatch.setattr(server.gateway.sender, "submit", broken)
        answer = await server.http.post(route, json={"phone": "5511999990000", "message": "oi"})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
