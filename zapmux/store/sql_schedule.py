"""Scheduled sends, cancelling, and finding a question by its engine id, as a part of
the SQL store (the ``messages`` table)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)

from zapmux.states import MessageStatus
from zapmux.store import schema as t
from zapmux.store.driver import DriverStatement
from zapmux.store.records import MessageRecord
from zapmux.store.rows import record
from zapmux.store.sql_base import SqlTables, literal_list

#: The statuses a message can be cancelled in: it has not been handed to WhatsApp.
CANCELLABLE = (MessageStatus.SCHEDULED, MessageStatus.QUEUED)
SENT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


class ScheduleTables(SqlTables):
    """Mixed into ``SqlStore``; writes go through its writer like every other."""

    single_node: bool
    #: On a single node: whether each tenant looked at ever asked a question (see
    #: :meth:`last_question`); set by ``SqlStore.__init__``.
    _asked: dict[str, bool]

    def _asks(self, message: MessageRecord) -> None:
        """``message`` is about to be written: if it is a question, its tenant asks."""
        if message.poll is not None and message.direction == "out":
            self._asked[message.tenant_id] = True

    def _scheduled_of(self, node: str) -> ColumnElement[bool]:
        """Scheduled rows of the tenants ``node`` runs (it holds their lease)."""
        m, tn = t.messages.c, t.tenants.c
        owned = select(tn.id).where(tn.owner == node)
        return and_(m.status == MessageStatus.SCHEDULED, m.tenant_id.in_(owned))

    async def next_scheduled_at(self, node: str) -> float | None:
        """When the earliest scheduled send of a tenant this node runs is due."""
        stmt = select(func.min(t.messages.c.send_at)).where(self._scheduled_of(node))
        row = await self._one(stmt)
        value = row[0] if row else None
        return float(value) if value is not None else None

    async def due_scheduled(self, node: str, now: float, limit: int) -> list[MessageRecord]:
        """Scheduled sends due by ``now`` of the tenants this node runs, earliest first."""
        m = t.messages.c
        stmt = (
            select(t.messages)
            .where(and_(self._scheduled_of(node), m.send_at <= now))
            .order_by(m.send_at, m.id)
            .limit(limit)
        )
        return await self._records(MessageRecord, stmt)

    async def promote_scheduled(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Move due scheduled sends, (tenant, message id), to the back of their queues.

        Each row is written again (a new ``id``): the queue sends in ``id`` order, and a
        reminder joins it at its time, behind what was already waiting. One transaction
        for the batch, in the order given; the keys that were still scheduled (not
        cancelled meanwhile, nor taken by another node) are returned.
        """
        if not keys:
            return []
        m = t.messages.c
        match = or_(*(and_(m.tenant_id == tid, m.message_id == mid) for tid, mid in keys))
        gone = delete(t.messages).where(and_(m.status == MessageStatus.SCHEDULED, match))
        tenant_ids = {tenant_id for tenant_id, _ in keys}

        def job(conn: Connection) -> list[tuple[str, str]]:
            # Only for tenants still alive, checked as store.guard does: on PostgreSQL
            # first, holding their rows (a delete of one waits, then removes these rows
            # too); on SQLite after the first write, which holds the database.
            postgres = conn.dialect.name == "postgresql"
            living = _living(conn, tenant_ids, lock=True) if postgres else set()
            rows = {
                (r.tenant_id, r.message_id): r for r in conn.execute(gone.returning(t.messages))
            }
            if not postgres:
                living = _living(conn, tenant_ids, lock=False)
            now = time.time()
            moved = [k for k in keys if k in rows and k[0] in living]
            if moved:
                values = [
                    {
                        **{c: v for c, v in rows[k]._mapping.items() if c != "id"},
                        "status": MessageStatus.QUEUED,
                        "updated_at": now,
                    }
                    for k in moved
                ]
                conn.execute(insert(t.messages), values)
            return moved

        return await self._write(job)

    async def cancel_message(self, tenant_id: str, message_id: str) -> str | None:
        """Cancel a message that has not gone out: the status it was cancelled in
        (scheduled or queued), or None."""

        def job(conn: Connection) -> str | None:
            for status in CANCELLABLE:
                if _move(
                    conn,
                    tenant_id,
                    message_id,
                    status,
                    status=MessageStatus.CANCELLED,
                    payload=None,
                ):
                    return status
            return None

        return await self._write(job)

    async def claim_queued(self, tenant_id: str, message_id: str, chat: str) -> bool:
        """Mark a queued message ``sending`` unless it was cancelled meanwhile."""
        return await self._write(
            lambda conn: _move(
                conn,
                tenant_id,
                message_id,
                MessageStatus.QUEUED,
                status=MessageStatus.SENDING,
                chat=chat,
            ),
            quick=True,
        )

    async def last_outgoing(self, tenant_id: str, phones: Sequence[str]) -> MessageRecord | None:
        # one or two spellings of the number: a seek each, in one statement
        stmt = _LAST_OUTGOING if len(phones) == 1 else _LAST_OUTGOING_EITHER
        params = {"k_tenant": tenant_id, "k_phone": phones[0], "k_phone2": phones[-1]}
        rows = await self.reader.seek(lambda conn: stmt.dicts(conn, params))
        row = max(rows, key=lambda row: row["id"], default=None)  # the newer of the two
        return None if row is None else record(MessageRecord, row)

    async def last_question(self, tenant_id: str, phones: Sequence[str]) -> MessageRecord | None:
        """Most incoming texts answer nothing, and most tenants never ask: on a single
        node, where every question is written through this store (``_asks``, before
        its write is handed in), a tenant known never to have asked one costs no read.
        Whether it did is one seek in ix_messages_questions, the first time."""
        if self.single_node:
            asked = self._asked.get(tenant_id)
            if asked is None:
                params = {"k_tenant": tenant_id}
                asked = bool(await self.reader.seek(lambda conn: _ASKED.rows(conn, params)))
                # a question handed in while looking (True meanwhile) is not undone
                asked = self._asked.setdefault(tenant_id, asked) or asked
            if not asked:
                return None
        last = await self.last_outgoing(tenant_id, phones)
        return last if last is not None and last.options else None

    async def find_outgoing(self, tenant_id: str, wa_id: str) -> MessageRecord | None:
        params = {"k_tenant": tenant_id, "k_wa_id": wa_id}
        return await self._record_of(MessageRecord, _FIND_OUTGOING, params)


def _move(conn: Connection, tenant_id: str, message_id: str, was: str, **values: Any) -> bool:
    """Update an outgoing message only while its status is ``was`` (in a write job)."""
    m = t.messages.c
    where = and_(
        m.tenant_id == tenant_id,
        m.message_id == message_id,
        m.direction == t.OUTGOING,
        m.status == was,
    )
    stmt = update(t.messages).where(where).values(**values, updated_at=time.time())
    return bool(conn.execute(stmt).rowcount)


def _living(conn: Connection, tenant_ids: set[str], lock: bool) -> set[str]:
    """Which of these tenants exist (on PostgreSQL, held until the transaction ends)."""
    stmt = select(t.tenants.c.id).where(t.tenants.c.id.in_(tenant_ids))
    if lock:
        stmt = stmt.with_for_update(read=True, key_share=True)
    return set(conn.execute(stmt).scalars())


# --- statements built once (every incoming text looks for the question it answers) ----
_m = t.messages.c
# Every incoming text asks it, and a chat's history can be long: the direction and the
# statuses are written into the SQL (not bound) so that the planner can use the index of
# outgoing messages (schema.ix_messages_outgoing) and seek to the newest at once.


def _newest_to(phone: str) -> Any:
    """The newest sent message to the number bound as ``phone``: one index seek."""
    return (
        select(t.messages)
        .where(
            and_(
                _m.tenant_id == bindparam("k_tenant"),
                _m.phone == bindparam(phone),
                _m.direction == t.OUTGOING,
                _m.status.in_(literal_list(*SENT)),
            )
        )
        .order_by(_m.id.desc())
        .limit(1)
    )


_LAST_OUTGOING = DriverStatement(_newest_to("k_phone"))
#: Whether the tenant asked any question (an outgoing message with answers), ever.
_ASKED = DriverStatement(
    select(_m.tenant_id).where(and_(_m.tenant_id == bindparam("k_tenant"), t.QUESTION)).limit(1)
)
# Both spellings of a Brazilian mobile number in one statement (a seek each; the caller
# keeps the newer of the two rows: an ORDER BY here would sort them in a temporary
# b-tree): one read of the database per incoming text instead of two.
_LAST_OUTGOING_EITHER = DriverStatement(
    union_all(select(_newest_to("k_phone").subquery()), select(_newest_to("k_phone2").subquery()))
)
_FIND_OUTGOING = (
    select(t.messages)
    .where(
        and_(
            _m.tenant_id == bindparam("k_tenant"),
            _m.wa_id == bindparam("k_wa_id"),
            _m.direction == t.OUTGOING,
        )
    )
    .limit(1)
)
