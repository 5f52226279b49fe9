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
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        rest = url.split("://", 1)[1]
        engine = create_async_engine(f"postgresql+asyncpg://{rest}", pool_size=10, max_overflow=10)
        return cls(engine, f"postgresql://{rest}")

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True)

    def _lock_leases(self, stmt: Any) -> Any:
        # Only the lease columns change: a lock that the guard's FOR KEY SHARE (a write
        # for the tenant in flight, store.guard) does not block, so such a tenant is not
        # passed over (FOR UPDATE would); a delete still is.
        return stmt.with_for_update(skip_locked=True, key_share=True)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
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
