"""PostgreSQL: the shared store of several nodes (row claims with FOR UPDATE SKIP LOCKED,
changes told to the other nodes with LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import asyncpg
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from zapmux.store import schema as t
from zapmux.store.base import ChangeCallback
from zapmux.store.sql import SqlStore
from zapmux.store.writer import Lanes

#: The one channel every node listens on; a notice is "<origin> <topic> <key>".
CHANNEL = "zapmux_changes"
#: Writers side by side: one for writes without a lane, the others for tenants' lanes.
#: Two measured best on a 2-core machine (more only added switching).
WRITER_LANES = 2
RELISTEN_S = 1.0  # after the listening connection is lost, before connecting again
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :payload)")
#: Committed writes between two looks for tables whose statistics fell far behind.
STATS_LOOK_EVERY = 2_000
#: A table of at least this many rows is analyzed by zapmux itself once it changed by
#: as many, and by half its rows, since its last ANALYZE (autovacuum's, at 10%, comes
#: first unless it lags: a new database's first minute, or autovacuum off). A table
#: that stays small however much it changes (the sandbox's queue: a row in and out per
#: send) is left to autovacuum: whichever plan a small table gets costs little.
STATS_MIN_CHANGES = 500
_BEHIND = text(
    "SELECT relname FROM pg_stat_user_tables"
    " WHERE schemaname = current_schema() AND relname = ANY(:tables)"
    " AND n_live_tup >= :least AND n_mod_since_analyze >= greatest(:least, n_live_tup / 2)"
)
log = logging.getLogger("zapmux.store")


class PostgresStore(SqlStore):
    # Other nodes may hold claims right now: a dead node's claims are left to expire.
    single_node = False

    def __init__(self, engine: AsyncEngine, dsn: str) -> None:
        super().__init__(engine)
        self.writer = Lanes(engine, WRITER_LANES)  # batches overlap (store.writer)
        self.dsn = dsn
        # Which store wrote a notice: a node's own changes are known to it already.
        self.origin = secrets.token_hex(6)
        self._subscribers: dict[str, list[ChangeCallback]] = {}
        self._listening = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self.statistics = Statistics(engine)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        rest = url.split("://", 1)[1]
        # At most 20 connections a node, as before, now all kept once opened: with 10
        # kept and 10 more opened and closed as reads came and went, every burst of
        # incoming texts (a read each) connected again and again, the statements
        # prepared anew on each (the latency benchmark's slowest webhooks: ~80 ms).
        engine = create_async_engine(f"postgresql+asyncpg://{rest}", pool_size=20, max_overflow=0)
        return cls(engine, f"postgresql://{rest}")

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True)

    def _lock_leases(self, stmt: Any) -> Any:
        # Only the lease columns change: a lock that the guard's FOR KEY SHARE (a write
        # for the tenant in flight, store.guard) does not block, so such a tenant is not
        # passed over (FOR UPDATE would); a delete still is.
        return stmt.with_for_update(skip_locked=True, key_share=True)

    async def _write(self, job: Any, lane: str | None = None, quick: bool = False) -> Any:
        result = await self.writer.write(job, lane, quick)
        self.statistics.wrote()
        return result

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await self.statistics.close()
        await super().close()

    # --- the change feed (``base.ChangeFeed``) ----------------------------------------
    def _notify(self, conn: Connection, topic: str, key: str) -> None:
        # NOTIFY is transactional: the other nodes hear of it once the batch commits.
        conn.execute(_NOTIFY, {"payload": f"{self.origin} {topic} {key}"})

    async def subscribe(self, topic: str, callback: ChangeCallback) -> None:
        self._subscribers.setdefault(topic, []).append(callback)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen_forever(), name="store-changes")
        await self._listening.wait()

    async def _listen_forever(self) -> None:
        """Hold one connection that LISTENs; when it is lost, connect again and tell every
        subscriber that anything may have changed meanwhile."""
        first = True
        while True:
            try:
                await self._listen_once(resync=not first)
                first = False
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("🔄 listening for other nodes' changes failed: %r", exc)
            except Exception:
                log.exception("❌ listening for other nodes' changes failed")
            await asyncio.sleep(RELISTEN_S)

    async def _listen_once(self, resync: bool) -> None:
        conn = await asyncpg.connect(self.dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._heard)
            self._listening.set()
            if resync:
                self._tell_all(None)
            await lost.wait()
            log.warning("🔄 the connection listening for other nodes' changes was lost")
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        if origin == self.origin:
            return  # our own change
        topic, _, key = rest.partition(" ")
        for callback in self._subscribers.get(topic, ()):
            self._call(callback, key)

    def _tell_all(self, key: str | None) -> None:
        for callbacks in self._subscribers.values():
            for callback in callbacks:
                self._call(callback, key)

    @staticmethod
    def _call(callback: ChangeCallback, key: str | None) -> None:
        try:
            callback(key)
        except Exception:
            log.exception("❌ a change subscriber failed")


class Statistics:
    """Keeps the planner's statistics of zapmux's tables from falling far behind.

    Every statement is prepared once per connection, and after five runs PostgreSQL
    keeps a generic plan for it, made on the statistics of that moment and replaced
    only when the table is analyzed again. In a new database that moment is an empty
    table with no statistics at all, where every index looks alike: a message's update
    by (tenant, message id) went through ``ix_messages_phone`` and walked all of the
    tenant's messages (700 buffers a send, more with each send: sends fell from 700/s
    to 420/s in 45 s) until autovacuum's first ANALYZE, up to a minute away. So, every
    ``STATS_LOOK_EVERY`` committed writes, this node asks which tables changed by more
    than ``STATS_MIN_CHANGES`` rows and half their size since their last ANALYZE, and
    analyzes those (skipping a table someone else is vacuuming or analyzing): a few
    times while a new table grows, then never, as autovacuum keeps up. Idle, nothing.
    """

    def __init__(self, engine: AsyncEngine, every: int = STATS_LOOK_EVERY) -> None:
        self.engine = engine
        self.every = every
        self._writes = 0
        self._task: asyncio.Task[list[str]] | None = None
        self.analyzed: list[str] = []  # every table this node analyzed, in order

    def wrote(self) -> None:
        """One write committed; look at the statistics when their turn came."""
        self._writes += 1
        if self._writes < self.every or (self._task is not None and not self._task.done()):
            return
        self._writes = 0
        self._task = asyncio.get_running_loop().create_task(self.look(), name="store-statistics")

    async def look(self) -> list[str]:
        """Analyze the tables whose statistics fell behind; their names."""
        try:
            async with self.engine.connect() as conn:
                asked = {"tables": list(t.metadata.tables), "least": STATS_MIN_CHANGES}
                behind = list((await conn.execute(_BEHIND, asked)).scalars())
                if behind:
                    # Names from pg_stat_user_tables, among our own tables': no quoting needed.
                    await conn.execute(text(f"ANALYZE (SKIP_LOCKED) {', '.join(sorted(behind))}"))
                    await conn.commit()
                    self.analyzed.extend(sorted(behind))
                    log.info("📊 analyzed %s (their statistics fell behind)", ", ".join(behind))
                return behind
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, DBAPIError) as exc:
            log.warning("📊 could not bring the tables' statistics up to date: %r", exc)
            return []

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
