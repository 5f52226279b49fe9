"""Two nodes on one PostgreSQL, each answering tenant lookups from memory: what one node
changes about a tenant (created, token rotated, webhook, state, deleted and created
again), the other knows at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import needs_postgres
from tests.helpers import LiveServer, Receiver, make_settings, wait_for

pytestmark = needs_postgres
KEY = "admin-key-for-the-two-nodes"
ADMIN = {"X-Api-Key": KEY}
PROMPTLY_S = 3.0  # a change notice takes milliseconds; this only bounds a failure


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _listed(node: LiveServer, tenant_id: str) -> dict[str, Any] | None:
    tenants = (await node.http.get("/tenants", headers=ADMIN)).json()["tenants"]
    return next((t for t in tenants if t["tenant_id"] == tenant_id), None)


async def _who(node: LiveServer, token: str) -> int:
    """401 for a token the node does not know; 403 for a tenant's token (an admin route)."""
    return (await node.http.get("/tenants", headers=_bearer(token))).status_code


async def test_tenant_changes_on_one_node_reach_the_other(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    nodes = [
        make_settings(tmp_path / name, database_url=database, node_id=name, api_key=KEY)
        for name in ("node-a", "node-b")
    ]
    async with LiveServer(nodes[0]) as a, LiveServer(nodes[1]) as b:
        created = await a.http.post("/tenants", json={"tenantId": "t1"}, headers=ADMIN)
        assert created.status_code == 201, created.text
        first_token = created.json()["token"]
        seen = await wait_for(lambda: _listed(b, "t1"), PROMPTLY_S, what="t1 listed on b")
        assert seen["status"] in {"connecting", "awaiting_qr"}
        assert await _who(b, first_token) == 403

        # the token rotated (on the node that runs t1): the old one stops working everywhere
        rotated = await b.http.post("/tenants/t1/token", headers=ADMIN)
        assert rotated.status_code == 200, rotated.text
        second_token = rotated.json()["token"]
        assert await _who(a, first_token) == 401

        async def rotated_on_b() -> bool:
            return await _who(b, first_token) == 401 and await _who(b, second_token) == 403

        await wait_for(rotated_on_b, PROMPTLY_S, what="b to know the new token only")

        # the webhook, and the state the runner reaches, as node a wrote them
        hook = f"{receiver.url}/t1-hook"
        put = await a.http.put("/tenants/t1/webhook", json={"url": hook}, headers=ADMIN)
        assert put.status_code == 200, put.text

        async def hook_and_qr_on_b() -> bool:
            shown = await _listed(b, "t1")
            return bool(shown and shown["webhook_url"] == hook and shown["status"] == "awaiting_qr")

        await wait_for(hook_and_qr_on_b, PROMPTLY_S, what="b to show t1's webhook and QR state")
        status = (await b.http.get("/status", headers=ADMIN)).json()
        assert status["tenants"]["total"] == 1 and status["tenants"]["awaiting_qr"] == 1

        # deleted, then created again under the same id: the new tenant inherits nothing
        assert (await a.http.delete("/tenants/t1", headers=ADMIN)).status_code == 200

        async def gone_from_b() -> bool:
            return await _listed(b, "t1") is None and await _who(b, second_token) == 401

        await wait_for(gone_from_b, PROMPTLY_S, what="t1 to vanish from b")
        again = await a.http.post("/tenants", json={"tenantId": "t1"}, headers=ADMIN)
        assert again.status_code == 201, again.text
        third_token = again.json()["token"]
        reborn = await wait_for(lambda: _listed(b, "t1"), PROMPTLY_S, what="the new t1 on b")
        assert reborn["webhook_url"] is None
        assert await _who(b, third_token) == 403
        assert await _who(b, second_token) == 401 and await _who(b, first_token) == 401
