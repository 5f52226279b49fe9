"""The outbox's counts for /status and /metrics: pending and dead as they are at each
ask; delivered rows (kept a week for replay, perhaps millions) counted at most every
``max_age_s``, in the background, the last count shown meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.test_store_contract import _delivery, finish
from tests.helpers import wait_for
from zapmux.outbox import OutboxCounts
from zapmux.store import open_store
from zapmux.store.base import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'counts.db'}")
    await opened.migrate()
    yield opened
    await opened.close()


async def _deliver(store: Store, chat: str, status: str = "delivered") -> None:
    await store.enqueue_deliveries([_delivery(chat, 1)])
    (claimed,) = await store.claim_deliveries(1, lock_s=30)
    await finish(store, claimed.delivery_id, status=status, attempts=1, last_error=None)


async def test_pending_and_dead_are_current_delivered_is_recounted_now_and_then(
    store: Store,
) -> None:
    counts = OutboxCounts(store, max_age_s=0.3)
    await _deliver(store, "a")
    assert await counts.current() == {"delivered": 1}  # the first ask counts them all

    await _deliver(store, "b")
    await _deliver(store, "c", status="dead")
    await store.enqueue_deliveries([_delivery("d", 1)])
    assert await counts.current() == {"pending": 1, "dead": 1, "delivered": 1}  # last count

    await asyncio.sleep(0.35)  # the count is old: the next ask starts a new one

    async def recounted() -> bool:
        return (await counts.current()).get("delivered") == 2

    await wait_for(recounted, timeout=5, what="the delivered rows to be counted again")
    assert await counts.current() == {"pending": 1, "dead": 1, "delivered": 2}
