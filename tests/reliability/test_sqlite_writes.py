"""SQLite's writes in the loop's own thread (``store.writer``): a write lock another
connection holds makes them wait without stopping the loop, and the WAL they grow is
copied back and started again while writes keep coming."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from tests.helpers import message_record
from zapmux.store import open_store


async def _ticking(gaps: list[float], stop: asyncio.Event) -> None:
    """Note how late each 10 ms sleep of the loop wakes."""
    while not stop.is_set():
        began = time.monotonic()
        await asyncio.sleep(0.01)
        gaps.append(time.monotonic() - began)


async def test_a_write_lock_held_elsewhere_stops_no_request(tmp_path: Path) -> None:
    """An operator's ``sqlite3`` shell in a write transaction: the message waits for
    the lock and is then written; the server meanwhile answers everything else."""
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    await store.add_message(message_record("t", "before"))  # the writer's connection is open
    shell = sqlite3.connect(path, isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")  # holds the write lock
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticking(gaps, stop))
    try:
        write = asyncio.create_task(store.add_message(message_record("t", "waits")))
        await asyncio.sleep(0.6)
        assert not write.done()  # waiting for the lock, not failed
        assert max(gaps) < 0.3  # and the loop kept running meanwhile
        shell.execute("COMMIT")
        await asyncio.wait_for(write, 10)
        listed = [m.message_id for m in await store.list_messages("t")]
        assert listed == ["waits", "before"]
    finally:
        stop.set()
        await ticker
        shell.close()
        await store.close()


async def test_the_wal_starts_again_while_writes_keep_coming(tmp_path: Path) -> None:
    """SQLite's own checkpoints are off on the writer's connection (they would run in
    the loop's thread); the writer's thread makes them, so the WAL file stops growing."""
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    store.writer.checkpoint_every = 20  # type: ignore[attr-defined]
    wal = Path(f"{path}-wal")
    for n in range(40):
        await store.add_message(message_record("t", f"m{n}"))  # a commit each
    early = wal.stat().st_size
    for n in range(40, 600):
        await store.add_message(message_record("t", f"m{n}"))
    assert wal.stat().st_size <= 2 * early  # without the checkpoints: ~15 times
    assert len(await store.list_messages("t", limit=1000)) == 600
    await store.close()
