"""The webhook outbox's table, as a part of the SQL store: enqueue, claim (the oldest
pending row of each chat, locked for the claimer; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), record outcomes in batches, list, replay and prune."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from zapmux.states import DeliveryStatus
from zapmux.store import schema as t
from zapmux.store.driver import DriverStatement
from zapmux.store.guard import in_life
from zapmux.store.records import ClaimCursor, Claimed, Delivery, DeliveryResult
from zapmux.store.sql_base import SqlTables
from zapmux.store.writer import DELIVERIES


def _chat_head(o: Any) -> Any:
    """``o`` is the oldest pending row of its chat (no older one to wait for).

    Asked as "its id is the chat's smallest pending id", a seek in ix_outbox_chat
    (schema.OUTBOX_PENDING) for each row looked at, rather than as "no older pending
    row exists": PostgreSQL turns a NOT EXISTS into an anti-join and plans it, and a
    plan made while the outbox was nearly empty (and kept, as generic plans are) walked
    every pending row for each row looked at (80-160 ms a claim with ~600 pending;
    webhooks fell seconds behind under load). A scalar subquery stays a seek per row.
    """
    older = t.outbox.alias("older")
    first = select(func.min(older.c.id)).where(
        and_(older.c.chat_key == o.c.chat_key, older.c.status == t.PENDING)
    )
    return o.c.id == first.scalar_subquery()


def _outcome(r: DeliveryResult, now: float) -> dict[str, Any]:
    """The parameters of ``_FINISH`` for one attempt's outcome."""
    return {
        "b_id": r.delivery_id,
        "b_status": r.status,
        "b_attempts": r.attempts,
        "b_error": r.last_error,
        "b_next": r.next_attempt_at,
        "b_delivered": now if r.status == DeliveryStatus.DELIVERED else None,
    }


def _unlocked(o: Any) -> Any:
    return or_(o.c.locked_until.is_(None), o.c.locked_until < bindparam("now"))


def _chosen(delivery_id: str | None, tenant_id: str | None) -> Any:
    """One given delivery unless it is in flight now; else every dead one (of a tenant)."""
    o = t.outbox.c
    if delivery_id:
        idle = or_(
            o.status != DeliveryStatus.PENDING,
            o.locked_until.is_(None),
            o.locked_until < time.time(),
        )
        return and_(o.delivery_id == delivery_id, idle)
    if tenant_id:
        return and_(o.status == DeliveryStatus.DEAD, o.tenant_id == tenant_id)
    return o.status == DeliveryStatus.DEAD


_o = t.outbox
#: A row a claim may take: pending, due, not locked, the oldest pending one of its chat.
_CLAIMABLE = and_(
    t.OUTBOX_PENDING,
    _o.c.next_attempt_at <= bindparam("now"),
    _unlocked(_o),
    _chat_head(_o),
)
_CLAIM_SELECT = (
    select(_o.c.id)
    .where(_CLAIMABLE)
    # By ix_outbox_due's order alone, which PostgreSQL can walk and stop at the limit;
    # "and then by id" made it sort every due row first (the order within a chat is
    # the NOT EXISTS's, not this one's).
    .order_by(_o.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer))
)
_FINISH = DriverStatement(
    update(_o)
    .where(_o.c.delivery_id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"),
        locked_until=None,
        next_attempt_at=func.coalesce(bindparam("b_next", type_=Float), _o.c.next_attempt_at),
        delivered_at=bindparam("b_delivered", type_=Float),
    )
)
_COLUMNS = tuple(c.name for c in _o.c)  # the order of a claimed row's values


def _claiming(picked: Any) -> DriverStatement:
    """:func:`_claim_of` ``picked``, compiled once (``picked`` takes no list)."""
    return DriverStatement(_claim_of(picked))


def _claim_of(picked: Any) -> Any:
    """Lock the rows ``picked`` chooses for the claimer, in one statement.

    The rows are not checked again outside the pick: on SQLite nothing else writes
    meanwhile, and on PostgreSQL the pick locks them (FOR UPDATE SKIP LOCKED),
    skipping rows another claim holds and checking a row another claim has just
    changed again before taking it. (A status test outside would also make SQLite
    walk the pending rows rather than look each picked id up.)
    """
    return (
        update(_o)
        .where(_o.c.id.in_(picked.scalar_subquery()))
        .values(locked_until=bindparam("until"))
        .returning(*_o.c)
    )


# A look at every pending row (the deliverer's, now and then) runs in the writer's
# transaction while it is quick (a few rows: one statement, no other hop). Behind a
# webhook that is down for hours a chat's rows pile up, and the walk through them
# (100,000 rows: 145 ms on SQLite) held every other write up: once a look took longer
# than SLOW_LOOK_S (of its own CPU time: a wait for the GIL is no reason), the next runs
# beside the writer as a read, and the writer only locks the ids it picked, each
# checked again (it may have changed since); back in the writer once one is quick.
SLOW_LOOK_S = 0.005
_PICKED_SELECT = select(_o.c.id).where(
    and_(_o.c.id.in_(bindparam("ids", expanding=True)), _CLAIMABLE)
)

# Rows queued after ``after``: the due chat heads among them, walked by id. The tests
# on status and time are kept off their indexes (``|| ''``, ``+ 0``), so that SQLite
# walks the new ids rather than every pending row.
_NEWER_SELECT = (
    select(_o.c.id)
    .where(
        and_(
            _o.c.id > bindparam("after", type_=Integer),
            (_o.c.status + "") == t.PENDING,
            (_o.c.next_attempt_at + 0) <= bindparam("now"),
            _unlocked(_o),
            _chat_head(_o),
        )
    )
    .order_by(_o.c.id)
    .limit(bindparam("limit", type_=Integer))
)
# The heads (oldest pending rows) of a few chats, those due and free: the rows that
# finished deliveries of those chats let go next. One statement for the chats of a
# round (a seek each), not one per chat: ``HEADS`` chats at most, the list padded
# with its last chat to the next of a few sizes, so that few forms are compiled.
HEADS = 64
_HEAD_SIZES = (1, 2, 4, 8, 16, 32, HEADS)


def _heads_select(size: int) -> Any:
    heads = [
        select(func.min(_o.c.id))
        .where(and_(_o.c.chat_key == bindparam(f"chat{i}"), t.OUTBOX_PENDING))
        .scalar_subquery()
        for i in range(size)
    ]
    return select(_o.c.id).where(
        and_(
            _o.c.id.in_(heads),
            # kept off their index (as in _NEWER_SELECT): the heads are looked up by id
            (_o.c.status + "") == t.PENDING,
            (_o.c.next_attempt_at + 0) <= bindparam("now"),
            _unlocked(_o),
        )
    )


_LAST_ID = DriverStatement(select(func.max(_o.c.id)))


_INSERT = DriverStatement(
    insert(_o).values({c.name: bindparam(c.name) for c in _o.c if c.name != "id"})
)


def _claim_params(lock_s: float) -> dict[str, Any]:
    """A claim's time and lock, taken as its job runs, not as it was handed in: a row
    queued meanwhile is due (and must be, before the cursor passes it)."""
    now = time.time()
    return {"now": now, "until": now + lock_s}


def _last_id(conn: Connection) -> int:
    return int(_LAST_ID.rows(conn, {})[0][0] or 0)


_CHATS_OF = (
    select(_o.c.chat_key).where(_o.c.delivery_id.in_(bindparam("ids", expanding=True))).distinct()
)


def _chats_of(conn: Connection, delivery_ids: list[str]) -> list[str]:
    if not delivery_ids:
        return []
    return [row[0] for row in conn.execute(_CHATS_OF, {"ids": delivery_ids})]


def _claim_looked(
    conn: Connection,
    looked: tuple[list[int], int],
    finished: list[str],
    limit: int,
    params: dict[str, Any],
    picked: Any,
    heads: Callable[[Connection, Sequence[str], dict[str, Any]], list[Any]],
) -> tuple[list[Any], int | None]:
    """A claim of what a look beside the writer picked (``_look``), in the writer: the
    heads of the chats whose delivery ``finished`` in this round (the look saw them
    blocked), then the picked ids that are still free."""
    rows = heads(conn, _chats_of(conn, finished)[:limit], params)
    taken = {row[0] for row in rows}
    ids, last_id = looked
    free = [i for i in ids if i not in taken][: limit - len(rows)]
    if free:
        rows += list(conn.execute(picked, {**params, "ids": free}))
    # the look saw every row up to last_id, unless it stopped at its limit
    return rows, None if len(ids) >= limit else last_id


def _look(conn: Connection, limit: int) -> tuple[list[int], int, float]:
    """The ids a claim may take now (up to ``limit``), the newest id there was when
    looking (one read: the rows after it are new to the look), and the CPU time the
    look took."""
    began = time.thread_time()
    last_id = int(conn.execute(_LAST_ID.stmt).scalar() or 0)  # first: see finish_and_claim
    ids = [row[0] for row in conn.execute(_CLAIM_SELECT, {"now": time.time(), "limit": limit})]
    return ids, last_id, time.thread_time() - began


class OutboxTables(SqlTables):
    """Mixed into ``SqlStore``; ``_lock`` is its own."""

    _claim_stmt: tuple[DriverStatement, Any, DriverStatement] | None
    _heads_stmt: dict[int, DriverStatement]
    _slow_look = False  # the last look at every pending row took over SLOW_LOOK_S

    def _lock(self, stmt: Any) -> Any:
        return stmt

    # --- outbox --------------------------------------------------------------------
    def _insert_deliveries(self, conn: Connection, deliveries: Sequence[Delivery]) -> None:
        now = time.time()
        for d in deliveries:
            d.created_at = d.created_at or now
            d.next_attempt_at = d.next_attempt_at or now
        if deliveries:
            for d in deliveries:
                _INSERT.run_record(conn, d)

    async def enqueue_deliveries(
        self, deliveries: Sequence[Delivery], incarnation: str | None = None
    ) -> None:
        tenant_id = deliveries[0].tenant_id if deliveries else None

        def job(conn: Connection) -> None:
            with in_life(conn, tenant_id, incarnation):
                self._insert_deliveries(conn, deliveries)

        await self._write(job, quick=True)

    async def claim_deliveries(self, limit: int, lock_s: float) -> list[Delivery]:
        return (await self.finish_and_claim([], limit, lock_s)).deliveries

    async def finish_deliveries(self, results: Sequence[DeliveryResult]) -> None:
        if results:
            await self.finish_and_claim(results, 0, 0.0)

    async def finish_and_claim(
        self,
        results: Sequence[DeliveryResult],
        limit: int,
        lock_s: float,
        since: ClaimCursor | None = None,
    ) -> Claimed:
        outcomes = [_outcome(r, time.time()) for r in results]
        full, picked, newer = self._claim_statements()
        looked: tuple[list[int], int] | None = None
        if since is None and limit > 0 and self._slow_look:
            picks, newest, spent = await self.reader.read(lambda conn: _look(conn, limit))
            looked = (picks, newest)
            self._slow_look = spent > SLOW_LOOK_S

        def job(conn: Connection) -> tuple[list[Any], int | None]:
            if outcomes:
                _FINISH.run_many(conn, outcomes)
            rows: list[Any] = []
            if since is None and looked is not None:
                pending = DeliveryStatus.PENDING
                finished = [o["b_id"] for o in outcomes if o["b_status"] != pending]
                params = _claim_params(lock_s)
                return _claim_looked(conn, looked, finished, limit, params, picked, self._heads)
            if since is not None:
                rows = self._heads(conn, since.chats[:limit], _claim_params(lock_s))
                if len(rows) >= limit:
                    return rows, since.last_id  # the new rows wait for the next round
            elif limit <= 0:
                return rows, None  # outcomes only
            # The newest id first, then the time: every row up to that id was queued (its
            # next_attempt_at set) before it was committed, so it is due by then, and a
            # row committed during the claim (by another writer or node) is after the
            # cursor. Time first, a row another writer committed just after it was not
            # due yet, and the cursor passed it (it waited for the next look at all).
            newest = _last_id(conn)
            params = _claim_params(lock_s)
            if since is None:
                began = time.thread_time()  # its own time, not the GIL's
                rows = full.rows(conn, {**params, "limit": limit})
                self._slow_look = time.thread_time() - began > SLOW_LOOK_S
                return rows, None if len(rows) >= limit else newest
            more = newer.rows(conn, {**params, "limit": limit - len(rows), "after": since.last_id})
            last_id = max(r[0] for r in more) if len(more) == limit - len(rows) else newest
            return rows + more, last_id

        # A look at every pending row (once a second at most) may meet a long backlog:
        # never a quick write, so never in the loop's thread (store.writer).
        full_look = since is None and looked is None and limit > 0
        # In a lane of its own on PostgreSQL (writer.DELIVERIES): a round waited ~18 ms
        # behind the batches of incoming rows, and webhooks fell seconds behind them.
        rows, last_id = await self._write(job, DELIVERIES, quick=not full_look)
        claimed = [Delivery(**dict(zip(_COLUMNS, row, strict=True))) for row in rows]
        claimed.sort(key=lambda d: (d.next_attempt_at, d.id or 0))
        return Claimed(claimed, last_id)

    def _claim_statements(self) -> tuple[DriverStatement, Any, DriverStatement]:
        # Built once per store: PostgreSQL's lock the rows they pick (never waiting for
        # a row another node holds).
        if self._claim_stmt is None:
            self._claim_stmt = (
                _claiming(self._lock(_CLAIM_SELECT)),
                _claim_of(self._lock(_PICKED_SELECT)),
                _claiming(self._lock(_NEWER_SELECT)),
            )
        return self._claim_stmt

    def _heads(self, conn: Connection, chats: Sequence[str], params: dict[str, Any]) -> list[Any]:
        """Claim the heads of ``chats`` that are due and free (in a write job)."""
        rows: list[Any] = []
        for first in range(0, len(chats), HEADS):
            some = chats[first : first + HEADS]
            size = next(size for size in _HEAD_SIZES if size >= len(some))
            stmt = self._heads_stmt.get(size)
            if stmt is None:
                stmt = self._heads_stmt[size] = _claiming(self._lock(_heads_select(size)))
            named = {f"chat{i}": some[min(i, len(some) - 1)] for i in range(size)}
            rows += stmt.rows(conn, {**params, **named})
        return rows

    async def release_deliveries(self, delivery_ids: Sequence[str] | None = None) -> int:
        o = t.outbox.c
        stmt = update(t.outbox).where(and_(t.OUTBOX_PENDING, o.locked_until.is_not(None)))
        if delivery_ids is not None:
            if not delivery_ids:
                return 0
            stmt = stmt.where(o.delivery_id.in_(list(delivery_ids)))
        return await self._execute(stmt.values(locked_until=None))

    async def purge_delivered(self, older_than: float) -> int:
        o = t.outbox.c
        return await self._execute(
            delete(t.outbox).where(
                and_(o.status == DeliveryStatus.DELIVERED, o.delivered_at < older_than)
            )
        )

    async def list_deliveries(
        self, status: str | None = None, tenant_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        o = t.outbox.c
        stmt = select(t.outbox)
        if status:
            stmt = stmt.where(o.status == status)
        if tenant_id:
            stmt = stmt.where(o.tenant_id == tenant_id)
        return await self._records(Delivery, stmt.order_by(o.id.desc()).limit(limit))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._find(Delivery, t.outbox, delivery_id=delivery_id)

    async def discard_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        return await self._execute(delete(t.outbox).where(_chosen(delivery_id, tenant_id)))

    async def retry_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        stmt = update(t.outbox).where(_chosen(delivery_id, tenant_id))
        return await self._execute(
            stmt.values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=time.time(),
                replayed_at=time.time(),
                locked_until=None,
                last_error=None,
            )
        )

    async def count_deliveries(self, statuses: Sequence[str] | None = None) -> dict[str, int]:
        o = t.outbox.c
        stmt = select(o.status, func.count())
        if statuses is not None:  # ranges of ix_outbox_due
            stmt = stmt.where(o.status.in_(list(statuses)))
        rows = await self._all(stmt.group_by(o.status))
        return {r[0]: int(r[1]) for r in rows}
