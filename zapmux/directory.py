"""Every tenant's record in memory, node-wide: the tenant lookups of every request
(its token, the tenant in the path), ``GET /tenants`` and ``GET /status`` read here,
never the store.

The :class:`TenantDirectory` is the node's :class:`~zapmux.store.base.TenantStore`:
it loads every record at start, writes through to the store (the store first, then
memory, so memory never shows what is not committed), and learns what other nodes
change from the store's change feed (``ChangeFeed``, PostgreSQL LISTEN/NOTIFY): each
notice reloads that one tenant, and an interrupted feed reloads them all. A tenant
deleted anywhere leaves it; a tenant created again under the same id is read afresh
(its new ``incarnation``, token and webhook), inheriting nothing.

What it does not keep current: the lease columns (``owner``, ``lease_until``), which
every node renews in bulk; ask the store's ``tenant_owner`` for those.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import operator
import time
from collections import Counter
from typing import Any

from zapmux.store.base import TENANT_CHANGES, Store, TenantStore
from zapmux.store.records import TenantRecord
from zapmux.tasks import TaskGroup

log = logging.getLogger("zapmux.directory")
_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(TenantRecord)))


def _copy(record: TenantRecord) -> TenantRecord:
    """A copy of ``record`` (several times as fast as ``copy.copy`` of a slots dataclass)."""
    return TenantRecord(*_FIELDS(record))


class TenantDirectory(TenantStore):
    """The tenants, from memory (see the module docstring). Records handed out are
    copies: a caller may change its own freely."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._records: dict[str, TenantRecord] = {}
        self._ids: list[str] = []  # sorted: pages by id
        self._by_token: dict[str, str] = {}  # token hash -> tenant id
        self._counts: Counter[str] = Counter()  # status -> tenants
        self.loaded = False
        # When this node last wrote each tenant (a tick of ``_clock``): a reload that
        # started before must not put back what it read.
        self._clock = 0
        self._written: dict[str, int] = {}
        self._stale: set[str] = set()  # tenants other nodes changed, to read again
        self._everything_stale = False
        self._wakeup = asyncio.Event()

    # --- start, and other nodes' changes ----------------------------------------------
    async def start(self, tasks: TaskGroup) -> None:
        """Follow other nodes' changes, then load every tenant (in that order, so that
        nothing committed in between is missed)."""
        await self.store.subscribe(TENANT_CHANGES, self.changed)
        tasks.spawn("tenant-directory", self._refresh_forever())
        await self.reload()

    def changed(self, tenant_id: str | None) -> None:
        """Another node changed ``tenant_id`` (None: perhaps any tenant)."""
        if tenant_id is None:
            self._everything_stale = True
        else:
            self._stale.add(tenant_id)
        self._wakeup.set()

    async def _refresh_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._refresh()
            except Exception:  # the store is briefly away: keep what is stale, try again
                log.exception("❌ reading tenants other nodes changed failed")
                self._wakeup.set()
                await asyncio.sleep(1.0)

    async def _refresh(self) -> None:
        if self._everything_stale:
            self._everything_stale = False
            self._stale.clear()
            await self.reload()
            return
        while self._stale:
            tenant_id = self._stale.pop()
            try:
                await self._reload_one(tenant_id)
            except BaseException:
                self._stale.add(tenant_id)
                raise

    async def reload(self) -> None:
        """Read every tenant again (what this node writes meanwhile stays)."""
        started = self._tick()
        records = {r.id: r for r in await self.store.list_tenants()}
        for tenant_id in list(self._records):
            if tenant_id not in records and self._written.get(tenant_id, 0) < started:
                self._drop(tenant_id)
        for record in records.values():
            if self._written.get(record.id, 0) < started:
                self._put(record)
        self.loaded = True

    async def _reload_one(self, tenant_id: str) -> None:
        while True:
            started = self._tick()
            record = await self.store.get_tenant(tenant_id)
            if self._written.get(tenant_id, 0) < started:
                break  # else this node wrote it meanwhile: read it again
        if record is None:
            self._drop(tenant_id)
        else:
            self._put(record)

    # --- reads (TenantStore) ----------------------------------------------------------
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        if not self.loaded:
            return await self.store.get_tenant(tenant_id)
        record = self._records.get(tenant_id)
        return _copy(record) if record is not None else None

    def has(self, tenant_id: str) -> bool:
        """Whether the tenant exists (without a copy of its record)."""
        return tenant_id in self._records

    async def tenant_by_token_hash(self, token_hash: str) -> TenantRecord | None:
        if not self.loaded:
            return await self.store.tenant_by_token_hash(token_hash)
        tenant_id = self._by_token.get(token_hash)
        return await self.get_tenant(tenant_id) if tenant_id is not None else None

    async def list_tenants(
        self, after: str | None = None, limit: int | None = None
    ) -> list[TenantRecord]:
        if not self.loaded:
            return await self.store.list_tenants(after, limit)
        start = 0 if after is None else bisect.bisect_right(self._ids, after)
        end = len(self._ids) if limit is None else start + limit
        return [_copy(self._records[i]) for i in self._ids[start:end]]

    async def count_tenants(self) -> dict[str, int]:
        if not self.loaded:
            return await self.store.count_tenants()
        return {status: n for status, n in self._counts.items() if n}

    # --- writes: the store first, then memory -----------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        created = await self.store.create_tenant(tenant)
        self._written[created.id] = self._tick()
        self._put(_copy(created))
        return created

    async def update_tenant(self, tenant_id: str, **fields: Any) -> bool:
        found = await self.store.update_tenant(tenant_id, **fields)
        self._written[tenant_id] = self._tick()
        record = self._records.get(tenant_id)
        if not found:
            self._drop(tenant_id)
        elif record is None:  # not seen yet (created by another node a moment ago)
            self.changed(tenant_id)
        else:
            changed = _copy(record)
            for name, value in fields.items():
                setattr(changed, name, value)
            changed.updated_at = time.time()
            self._put(changed)
        return found

    async def delete_tenant(self, tenant_id: str) -> bool:
        found = await self.store.delete_tenant(tenant_id)
        self._written[tenant_id] = self._tick()
        self._drop(tenant_id)
        return found

    # --- memory -----------------------------------------------------------------------
    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _put(self, record: TenantRecord) -> None:
        record.owner = record.lease_until = None  # not kept current here
        old = self._records.get(record.id)
        if old is None:
            bisect.insort(self._ids, record.id)
        else:
            self._forget_indexes(old)
        self._records[record.id] = record
        self._counts[record.status] += 1
        if record.token_hash:
            self._by_token[record.token_hash] = record.id

    def _drop(self, tenant_id: str) -> None:
        old = self._records.pop(tenant_id, None)
        if old is None:
            return
        self._forget_indexes(old)
        index = bisect.bisect_left(self._ids, tenant_id)
        del self._ids[index]

    def _forget_indexes(self, old: TenantRecord) -> None:
        self._counts[old.status] -= 1
        if old.token_hash and self._by_token.get(old.token_hash) == old.id:
            del self._by_token[old.token_hash]
