"""What every part of the in-memory store shares: its tables, one turn of the event loop
per call, and the check that a write belongs to a tenant's current life.

Each call gives the loop one turn (as a round trip to a database would), then runs to
its end without awaiting anything: a call is atomic, as one transaction is. A write
checks everything that can refuse it before it changes anything, so a refused write
leaves no trace (SQL's rollback).
"""

from __future__ import annotations

import asyncio
import copy as copy_module
import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from zapmux.errors import TenantNotFound
from zapmux.store.records import (
    CloudAccount,
    DeadInbound,
    Delivery,
    IdempotentAnswer,
    InboxMessage,
    MessageRecord,
    OptOut,
    SandboxQr,
    SandboxSession,
    TenantRecord,
)

R = TypeVar("R")


@dataclass(slots=True)
class Node:
    id: str
    url: str
    heartbeat_at: float


@dataclass(slots=True)
class Media:
    tenant_id: str
    message_id: str
    mimetype: str
    filename: str | None
    data: bytes


@dataclass(slots=True)
class JidAnswer:
    tenant_id: str
    phone: str
    exists: bool
    jid: str | None
    checked_at: float


@dataclass(slots=True)
class PairCode:
    code: str
    tenant_id: str
    phone: str
    expires_at: float


@dataclass(slots=True)
class Pending:
    id: int
    tenant_id: str
    event: str
    created_at: float


@dataclass
class Tables:
    """The rows, one dict per table of the SQL schema (same names) by its primary key.

    A dict keeps insertion order; for the tables with an ``id`` that is ``id`` order,
    since ids only grow and a row written again (a promoted scheduled send) gets a new
    one. A row whose record has a ``tenant_id`` belongs to that tenant's life.
    """

    tenants: dict[str, TenantRecord] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    messages: dict[tuple[str, str], MessageRecord] = field(default_factory=dict)
    outbox: dict[str, Delivery] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotentAnswer] = field(default_factory=dict)
    inbound_dead: dict[int, DeadInbound] = field(default_factory=dict)
    jid_cache: dict[tuple[str, str], JidAnswer] = field(default_factory=dict)
    opt_outs: dict[tuple[str, str], OptOut] = field(default_factory=dict)
    media: dict[tuple[str, str], Media] = field(default_factory=dict)
    cloud_accounts: dict[str, CloudAccount] = field(default_factory=dict)
    sandbox_sessions: dict[str, SandboxSession] = field(default_factory=dict)
    sandbox_qr: dict[str, SandboxQr] = field(default_factory=dict)
    sandbox_pair_codes: dict[str, PairCode] = field(default_factory=dict)
    sandbox_phones: dict[str, bool] = field(default_factory=dict)
    sandbox_inbox: dict[int, InboxMessage] = field(default_factory=dict)
    sandbox_pending: dict[int, Pending] = field(default_factory=dict)

    def by_name(self) -> Iterator[tuple[str, dict[Any, Any]]]:
        """Every table with its name."""
        for table in dataclasses.fields(self):
            yield table.name, getattr(self, table.name)

    def rows_of(self, tenant_id: str) -> dict[str, int]:
        """How many rows each table holds for ``tenant_id`` (only the non-empty ones)."""
        counts = {name: len(_keys_of(rows, tenant_id)) for name, rows in self.by_name()}
        return {name: n for name, n in counts.items() if n}

    def drop_tenant(self, tenant_id: str) -> None:
        """Remove every row of ``tenant_id``'s life (not its row in ``tenants``)."""
        for _name, rows in self.by_name():
            for key in _keys_of(rows, tenant_id):
                del rows[key]


def _keys_of(rows: Mapping[Any, Any], tenant_id: str) -> list[Any]:
    return [key for key, row in rows.items() if getattr(row, "tenant_id", None) == tenant_id]


async def turn() -> None:
    """Give the event loop one turn, as a database round trip would: callers that loop
    over the store let other tasks run, and writes racing a delete interleave."""
    await asyncio.sleep(0)


def copy(row: R) -> R:
    """A copy of a record: what the store keeps and what it hands out are never shared."""
    return copy_module.deepcopy(row)


def copy_or_none(row: R | None) -> R | None:
    return None if row is None else copy(row)


def duplicate(table: str, key: Any) -> IntegrityError:
    """The error for a row whose key is taken: the one SQL raises (callers, as
    ``inbound.never_storable``, know it)."""
    return IntegrityError(f"INSERT INTO {table}", {"key": repr(key)}, ValueError("duplicate key"))


def assign(row: Any, fields: Mapping[str, Any]) -> None:
    """Set ``fields`` on ``row``, all or (when one is not a column) none."""
    columns = {f.name for f in dataclasses.fields(row)}
    unknown = set(fields) - columns
    if unknown:
        raise ValueError(f"no such column: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        setattr(row, name, value)


class MemoryTables:
    """The tables and the helpers over them; mixed into ``MemoryStore``."""

    tables: Tables
    _ids: defaultdict[str, itertools.count[int]]

    def reset(self) -> None:
        """Forget everything: the store is as new (``tables`` is what it holds)."""
        self.tables = Tables()
        self._ids = defaultdict(lambda: itertools.count(1))

    def _new_id(self, table: str) -> int:
        """The next ``id`` of ``table`` (as an autoincrement column: never reused)."""
        return next(self._ids[table])

    def _check_life(self, tenant_id: str | None, incarnation: str | None) -> None:
        """Raise ``TenantNotFound`` unless the tenant exists in that life (``None``
        checks nothing), as ``store.guard`` does on SQL."""
        if tenant_id is None or incarnation is None:
            return
        tenant = self.tables.tenants.get(tenant_id)
        if tenant is None or tenant.incarnation != incarnation:
            raise TenantNotFound(f"tenant {tenant_id!r} was deleted")
