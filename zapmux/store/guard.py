"""Writes that belong to one life of a tenant land only while that life exists.

A tenant deleted and created again under the same id is a new life (its
``incarnation``). A write made for the old life (a send that raced the delete, an
inbound message of the old session) must not become the new tenant's: each such
write checks, inside its own transaction, that the tenant still exists with that
incarnation, and rolls back otherwise (``TenantNotFound``).

When the check runs differs by database. On PostgreSQL it comes first and takes
``FOR KEY SHARE`` on the tenant's row: a delete (which ``delete_tenant`` starts with
the tenant's row) waits for the write to commit and then removes its rows too, or the
write waits for the delete and finds no row. Taking the tenant's row before any other
lock keeps the two from deadlocking. On SQLite it comes after the write's first
statement, which took the database's write lock (and all writes go through the one
writer anyway): the check then sees the latest commit, and nothing can delete the
tenant until the write ends.

Once per transaction: a life confirmed stays so until the transaction ends (on
PostgreSQL its row is locked; on SQLite nothing else writes), so the writer's batch
checks each tenant once, however many of its jobs write for it. A job of the batch
that writes the tenants table itself (create, update, delete) forgets what was
confirmed (:func:`lives_changed`), and the next job checks again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, and_, bindparam, select

from zapmux.errors import TenantNotFound
from zapmux.store import schema as t
from zapmux.store.driver import DriverStatement
from zapmux.store.writer import transaction_notes


@contextmanager
def in_life(conn: Connection, tenant_id: str | None, incarnation: str | None) -> Iterator[None]:
    """Around a write job's writes (``store.writer``): raise ``TenantNotFound`` (rolling
    back) unless the tenant exists in that incarnation; ``None`` checks nothing (writes
    of no tenant)."""
    life = (tenant_id, incarnation)
    confirmed = _confirmed(conn)
    if tenant_id is None or incarnation is None or life in confirmed:
        yield
        return
    locks = conn.dialect.name == "postgresql"
    if locks:
        _check(conn, tenant_id, incarnation, lock=True)
    yield
    if not locks:
        _check(conn, tenant_id, incarnation, lock=False)
    confirmed.add(life)


def lives_changed(conn: Connection) -> None:
    """A write job changed the tenants table: the lives its transaction confirmed so far
    are checked again when next written for."""
    _confirmed(conn).clear()


def _confirmed(conn: Connection) -> set[tuple[str | None, str | None]]:
    """The lives the transaction of ``conn`` confirmed (an empty, unkept set outside a
    writer's transaction)."""
    notes = transaction_notes(conn)
    if notes is None:
        return set()
    lives: set[tuple[str | None, str | None]] = notes.setdefault("lives", set())
    return lives


def _check(conn: Connection, tenant_id: str, incarnation: str, lock: bool) -> None:
    params = {"k_id": tenant_id, "k_incarnation": incarnation}
    if not (_LIFE_LOCKED if lock else _LIFE).rows(conn, params):
        raise TenantNotFound(f"tenant {tenant_id!r} was deleted")


_c = t.tenants.c
_LIFE_SELECT = select(_c.id).where(
    and_(_c.id == bindparam("k_id"), _c.incarnation == bindparam("k_incarnation"))
)
_LIFE = DriverStatement(_LIFE_SELECT)
_LIFE_LOCKED = DriverStatement(_LIFE_SELECT.with_for_update(read=True, key_share=True))
