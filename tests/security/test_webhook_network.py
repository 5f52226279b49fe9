"""A tenant token cannot aim its webhook at the operator's own network: not by address
(refused at ``PUT``), not by a name that resolves there now (refused at ``PUT``), and
not by a name that resolves there later, when it is posted to (DNS rebinding: each
delivery refuses it). The admin may; so may a host listed in
``ZAPMUX_WEBHOOK_ALLOWED_HOSTS``. Names resolve through the test's own DNS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import LiveServer, Names, Receiver, make_settings, wait_for
from tests.security.common import ADMIN_KEY, admin, assert_error, bearer
from zapmux.webhook_url import webhook_resolver

CUSTOMER = "5511987650003"


async def _refused(server: LiveServer) -> dict[str, Any] | None:
    rows = await server.deliveries(status="pending")
    return next((r for r in rows if r["attempts"] >= 1), None)


@contextlib.asynccontextmanager
async def _shop(
    tmp_path: Path, names: Names, **settings: Any
) -> AsyncIterator[tuple[LiveServer, Receiver, httpx.AsyncClient]]:
    """A keyed server resolving through ``names`` (its own client holds the admin key),
    a receiver, and a client holding paired tenant shop's token."""
    server = LiveServer(make_settings(tmp_path, api_key=ADMIN_KEY, **settings))
    server.gateway.deliverer.resolver = webhook_resolver(names)
    server.http.headers.update(admin())
    async with server, Receiver() as hooks, httpx.AsyncClient(base_url=server.url) as tenant:
        created = await server.create_paired("shop")
        tenant.headers.update(bearer(created["token"]))
        yield server, hooks, tenant


async def test_a_tenant_token_cannot_reach_the_operators_network(tmp_path: Path) -> None:
    names = Names({"internal.example": "127.0.0.1", "rebind.example": "93.184.216.34"})
    async with _shop(tmp_path, names) as (server, hooks, tenant):
        internal = f"http://internal.example:{hooks.port}/hook"
        answer = await tenant.put("/tenants/shop/webhook", json={"url": internal})
        assert_error(answer, 400, "webhook_host_not_allowed")
        message = answer.json()["error"]["message"]
        assert "internal.example resolves to a private or loopback address (127.0.0.1)" in message
        answer = await tenant.put("/tenants/shop/webhook", json={"url": f"{hooks.url}/hook"})
        assert_error(answer, 400, "webhook_host_not_allowed")  # the address itself
        unchanged = (await tenant.get("/tenants/shop/webhook")).json()["webhook"]
        assert unchanged["default"] is True  # refused: nothing was set

        # the admin may: it is the operator's network
        answer = await server.http.put("/tenants/shop/webhook", json={"url": internal})
        assert answer.status_code == 200, answer.text
        assert answer.json()["webhook"]["set_by"] == "admin"
        await server.customer_says(CUSTOMER, "shop", "oi")
        await wait_for(lambda: hooks.got(1), what="the message at the admin's webhook")

        # public when set, private when posted to
        rebind = f"http://rebind.example:{hooks.port}/hook"
        answer = await tenant.put("/tenants/shop/webhook", json={"url": rebind})
        assert answer.status_code == 200, answer.text
        shown = (await tenant.get("/tenants/shop/webhook")).json()["webhook"]
        assert shown["set_by"] == "tenant"
        names.names["rebind.example"] = "127.0.0.1"
        await server.customer_says(CUSTOMER, "shop", "de novo")
        row = await wait_for(lambda: _refused(server), what="the attempt to be refused")
        assert "rebind.example resolves to a private or loopback address" in row["last_error"]
        assert len(hooks.received) == 1  # nothing more reached the operator's network


async def test_a_listed_host_may_be_private_for_a_tenant(tmp_path: Path) -> None:
    names = Names({"crm.internal": "127.0.0.1"})
    async with _shop(tmp_path, names, webhook_allowed_hosts="crm.internal") as shop:
        server, hooks, tenant = shop
        url = f"http://crm.internal:{hooks.port}/hook"
        answer = await tenant.put("/tenants/shop/webhook", json={"url": url})
        assert answer.status_code == 200, answer.text
        await server.customer_says(CUSTOMER, "shop", "oi")
        await wait_for(lambda: hooks.got(1), what="the message at the listed host")
