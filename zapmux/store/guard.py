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

On SQLite, once for as long as no job writes the tenants table: the writer's
transactions are the only writes to the database, one after another, so a life a
committed transaction confirmed stays so until a later one writes the tenants table
(``writer.KEPT``). Each incoming message of a tenant had checked its life again, a
statement of its own in nearly every batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, insert, select

from zapmux.errors import TenantNotFound
from zapmux.store import schema as t
from zapmux.store.driver import DriverStatement
from zapmux.store.writer import KEPT, ON_COMMIT, transaction_notes


@contextmanager
def in_life(conn: Connection, tenant_id: str | None, incarnation: str | None) -> Iterator[None]:
    """Around a write job's writes (``store.writer``): raise ``TenantNotFound`` (rolling
    back) unless the tenant exists in that incarnation; ``None`` checks nothing (writes
    of no tenant)."""
    life = (tenant_id, incarnation)
    confirmed = _confirmed(conn)
    if tenant_id is None or incarnation is None or life in confirmed or _kept(conn, life):
        yield
        return
    locks = conn.dialect.name == "postgresql"
    if locks:
        _check(conn, tenant_id, incarnation, lock=True)
    yield
    if not locks:
        _check(conn, tenant_id, incarnation, lock=False)
    confirmed.add(life)


def insert_in_life(
    conn: Connection,
    stmt: DriverStatement,
    params: Mapping[str, Any],
    tenant_id: str | None,
    incarnation: str | None,
) -> list[Any] | None:
    """An insert guarded as :func:`in_life` guards, in one statement where a check is
    due (one round trip less): ``stmt`` from :func:`life_insert`. Its rows (RETURNING);
    None when no check is due (the caller then writes as it would inside ``in_life``).
    ``TenantNotFound`` when the life is gone (nothing was inserted)."""
    life = (tenant_id, incarnation)
    if tenant_id is None or incarnation is None or life in _confirmed(conn) or _kept(conn, life):
        return None
    rows = stmt.rows(conn, {**params, "k_id": tenant_id, "k_incarnation": incarnation})
    if not rows:
        raise TenantNotFound(f"tenant {tenant_id!r} was deleted")
    _confirmed(conn).add((tenant_id, incarnation))
    return rows


def life_insert(table: Table, columns: Sequence[str], returning: Any) -> DriverStatement:
    """``INSERT INTO table (columns) SELECT :columns FROM tenants WHERE <the life>``: the
    row goes in only while the life exists, and on PostgreSQL the tenant's row is locked
    (``FOR KEY SHARE``) before the insert takes any lock of its own, as :func:`in_life`
    orders them."""
    row = select(*(bindparam(name, type_=table.c[name].type) for name in columns))
    life = row.select_from(t.tenants).where(_LIFE_WHERE)
    life = life.with_for_update(read=True, key_share=True)
    return DriverStatement(insert(table).from_select(list(columns), life).returning(returning))


def lives_changed(conn: Connection) -> None:
    """A write job changed the tenants table: the lives its transaction confirmed so far
    (and those kept from before it) are checked again when next written for."""
    _confirmed(conn).clear()
    notes = transaction_notes(conn)
    if notes is not None:
        notes["lives changed"] = True


Life = tuple[str | None, str | None]


def _confirmed(conn: Connection) -> set[Life]:
    """The lives the transaction of ``conn`` confirmed (an empty, unkept set outside a
    writer's transaction). On SQLite they are kept once it commits."""
    notes = transaction_notes(conn)
    if notes is None:
        return set()
    lives: set[Life] | None = notes.get("lives")
    if lives is None:
        lives = notes["lives"] = set()
        kept = notes.get(KEPT)
        if kept is not None:
            notes.setdefault(ON_COMMIT, []).append(lambda: _keep(kept, notes))
    return lives


def _kept(conn: Connection, life: Life) -> bool:
    """Whether an earlier committed transaction confirmed ``life`` and none since (nor
    this one so far) wrote the tenants table (SQLite: see the module docstring)."""
    notes = transaction_notes(conn)
    if notes is None or notes.get("lives changed"):
        return False
    kept = notes.get(KEPT)
    return kept is not None and life in kept.get("lives", ())


def _keep(kept: dict[str, Any], notes: dict[str, Any]) -> None:
    """Once a transaction committed: the lives it confirmed join those kept, or replace
    them all if it wrote the tenants table."""
    if notes.get("lives changed"):
        kept["lives"] = set(notes["lives"])
    else:
        kept.setdefault("lives", set()).update(notes["lives"])


def _check(conn: Connection, tenant_id: str, incarnation: str, lock: bool) -> None:
    params = {"k_id": tenant_id, "k_incarnation": incarnation}
    if not (_LIFE_LOCKED if lock else _LIFE).rows(conn, params):
        raise TenantNotFound(f"tenant {tenant_id!r} was deleted")


_c = t.tenants.c
_LIFE_WHERE = and_(_c.id == bindparam("k_id"), _c.incarnation == bindparam("k_incarnation"))
_LIFE_SELECT = select(_c.id).where(_LIFE_WHERE)
_LIFE = DriverStatement(_LIFE_SELECT)
_LIFE_LOCKED = DriverStatement(_LIFE_SELECT.with_for_update(read=True, key_share=True))
