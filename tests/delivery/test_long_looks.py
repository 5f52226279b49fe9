"""Rows piled up behind a webhook that is down make the deliverer's look at every
pending row long: such a look comes less often (``LOOK_SHARE`` of the time), while
the deliverer's own retries go out on time all the same (it asks for their chats by
name) and nothing waits for the look."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from tests.helpers import Receiver, make_settings, wait_for
from zapmux.outbox import Deliverer, new_delivery
from zapmux.store.records import ClaimCursor, Claimed
from zapmux.store.sqlite import SqliteStore

LOOK_S = 0.1  # as long as a look through ~80,000 rows behind a dead webhook


class SlowLooks(SqliteStore):
    """The SQLite store, each look at every pending row made ``LOOK_S`` long."""

    looks = 0

    async def finish_and_claim(
        self,
        results: Any,
        limit: int,
        lock_s: float,
        since: ClaimCursor | None = None,
    ) -> Claimed:
        if since is None:
            self.looks += 1
            await asyncio.sleep(LOOK_S)
        return await super().finish_and_claim(results, limit, lock_s, since)


async def test_a_long_look_comes_seldom_and_a_retry_does_not_wait_for_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = SlowLooks.from_url(f"sqlite:///{tmp_path / 'outbox.db'}")
    await store.migrate()
    settings = make_settings(tmp_path, flask_url=receiver.url)
    deliverer = Deliverer(settings, store)
    receiver.statuses = [503]  # the first attempt fails; its retry is due in under 0.2 s
    delivery = new_delivery(
        event="relay", target="flask", payload={"n": 1}, chat_key="c", tenant_id=None
    )
    await store.enqueue_deliveries([delivery])
    running = asyncio.create_task(deliverer.run())
    try:
        await wait_for(lambda: receiver.got(2), timeout=3, what="the retry to go out")
        assert [hit.answered for hit in receiver.received] == [503, 200]
        await asyncio.sleep(2.5)
        # one look at start; the next only after LOOK_S / LOOK_SHARE = 5 s (not each second)
        assert store.looks == 1
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await store.close()
