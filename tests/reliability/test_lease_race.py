"""Never two live sessions for one tenant on one node (issue 14, 4)."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import func, select

from tests.helpers import LiveServer
from tests.reliability.conftest import LiveFactory
from zapmux.store.schema import sandbox_qr


async def first_codes(server: LiveServer, tenant_id: str) -> int:
    """How many pairings (first QR codes) were started for the tenant."""
    engine = server.gateway.store.engine  # type: ignore[attr-defined]
    query = select(func.count()).where(
        sandbox_qr.c.tenant_id == tenant_id, sandbox_qr.c.code.like("%,1")
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def test_a_released_runner_never_opens_a_session_again(live: LiveFactory) -> None:
    async with live() as server:
        assert (await server.http.post("/tenants", json={"tenantId": "T"})).status_code == 201
        gw = server.gateway
        runner = gw.supervisor.runner("T")
        await gw.supervisor.release("T")  # the lease went to another node
        assert "T" not in gw.engine.sessions  # type: ignore[attr-defined]
        await runner.start()  # a start that was already on its way
        assert runner.session is None
        assert "T" not in gw.engine.sessions  # type: ignore[attr-defined]


async def test_tenants_created_during_lease_syncs_get_exactly_one_session(
    live: LiveFactory,
) -> None:
    async with live() as server:
        cluster = server.gateway.cluster

        async def sync_forever() -> None:
            while True:
                await cluster.sync()
                await asyncio.sleep(0)

        syncing = asyncio.create_task(sync_forever())
        ids = [f"T{n:03d}" for n in range(60)]
        try:
            for batch in (ids[i : i + 15] for i in range(0, len(ids), 15)):
                created = await asyncio.gather(
                    *(server.http.post("/tenants", json={"tenantId": t}) for t in batch)
                )
                assert {r.status_code for r in created} == {201}
        finally:
            syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncing
        for tenant_id in ids:  # a second request would start a second session if lost
            assert (await server.http.get(f"/tenants/{tenant_id}/qr")).status_code == 200
        assert sorted(server.gateway.supervisor.runners) == ids
        assert [await first_codes(server, t) for t in ids] == [1] * len(ids)
