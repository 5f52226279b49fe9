"""The node's scheduling timer: woken, released, and stopped when the server stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.helpers import message_record
from zapmux.optouts import OptOuts
from zapmux.scheduler import Scheduler
from zapmux.store import open_store
from zapmux.store.base import Store
from zapmux.store.records import TenantRecord


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    backend = open_store("memory://")  # what a store keeps is not under test here
    await backend.migrate()
    await backend.create_tenant(TenantRecord(id="t", owner="node", lease_until=2e9))
    yield backend
    await backend.close()


async def test_a_wake_up_racing_the_stop_never_keeps_the_timer_alive(store: Store) -> None:
    """A stop changes every tenant's status, and each change wakes the timer: the wake
    and the cancel arrive together, and the timer must still end."""
    for _ in range(50):
        scheduler = Scheduler(store, "node", OptOuts(store), lambda _tenant, _count: None)
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.02)  # asleep on its wake-up now
        scheduler.wake()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the scheduler ignored its cancellation"


async def test_a_new_send_wakes_the_timer_early(store: Store) -> None:
    released: list[str] = []
    woken = asyncio.Event()

    def queued(tenant_id: str, count: int) -> None:
        released.extend([tenant_id] * count)
        woken.set()

    scheduler = Scheduler(store, "node", OptOuts(store), queued)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(0.05)  # nothing scheduled: it sleeps its longest
        scheduled = message_record("t", "m", "scheduled", send_at=time.time() + 0.2, payload="{}")
        await store.add_message(scheduled)
        scheduler.wake()
        await asyncio.wait_for(woken.wait(), 5)
        assert released == ["t"]
        promoted = await store.get_message("t", "m")
        assert promoted is not None and promoted.status == "queued"
    finally:
        task.cancel()
