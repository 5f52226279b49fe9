"""A deleted tenant leaves nothing a new tenant of its id could inherit (issue 14, 1)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from tests.helpers import LiveServer, wait_for
from tests.reliability.conftest import LiveFactory
from zapmux.store.schema import metadata


async def rows_of(server: LiveServer, tenant_id: str) -> dict[str, int]:
    """Rows any table still holds for ``tenant_id`` (only the non-empty tables)."""
    engine = server.gateway.store.engine  # type: ignore[attr-defined]
    counts = {}
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if "tenant_id" in table.c:
                query = select(func.count()).where(table.c.tenant_id == tenant_id)
                if n := (await conn.execute(query)).scalar():
                    counts[table.name] = n
    return counts


async def test_sends_racing_a_delete_never_reach_the_next_tenant_of_that_id(
    live: LiveFactory,
) -> None:
    async with live(send_rate_per_minute=60, send_burst=2) as server:
        await server.create_paired("D", phone="5511988880001")

        async def send(n: int) -> int:
            response = await server.http.post(
                "/send/D",
                json={"phone": "5511977770000", "message": f"old {n}"},
                headers={"Idempotency-Key": f"k{n}"},
            )
            return response.status_code

        sends = [asyncio.create_task(send(n)) for n in range(100)]
        await asyncio.sleep(0.15)
        deleted = await server.http.delete("/tenants/D")
        assert deleted.status_code == 200, deleted.text
        statuses = await asyncio.gather(*sends)
        assert set(statuses) <= {200, 202, 404, 409}, statuses
        late = [await send(n) for n in range(100, 103)]
        assert late == [404, 404, 404]
        assert await rows_of(server, "D") == {}

        await server.create_paired("D", phone="5511988880002")  # another number
        await server.http.post("/sandbox/messages", json={"from": "5511977770000",
                               "tenant_id": "D", "text": "hello new D"})  # fmt: skip
        await wait_for(
            lambda: _logged(server, "D", "in"), what="the new D's first incoming message"
        )
        await asyncio.sleep(0.5)  # time for a queue, if anything were left, to move
        log = (await server.http.get("/tenants/D/messages")).json()["messages"]
        assert [m["text"] for m in log] == ["hello new D"]
        inbox = (await server.http.get("/sandbox/phones/5511977770000/messages")).json()
        assert inbox["messages"] == []  # nothing of the old D's went out from the new one


async def _logged(server: LiveServer, tenant_id: str, direction: str) -> bool:
    response = await server.http.get(f"/tenants/{tenant_id}/messages?direction={direction}")
    return bool(response.json()["messages"])
