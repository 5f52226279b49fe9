"""The tenant directory answers as the store does (it is the node's ``TenantStore``),
from memory: pages, counts, tokens, updates and deletes, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from zapmux.directory import TenantDirectory
from zapmux.errors import TenantExists
from zapmux.store.base import Store
from zapmux.store.records import TenantRecord
from zapmux.tasks import TaskGroup


@pytest.fixture
async def directory(store: Store) -> AsyncIterator[TenantDirectory]:
    await store.create_tenant(TenantRecord(id="before", status="connected", token_hash="h0"))
    tasks = TaskGroup()
    found = TenantDirectory(store)
    await found.start(tasks)
    yield found
    await tasks.cancel_all()


async def _same_as_the_store(directory: TenantDirectory, store: Store) -> None:
    for after, limit in ((None, None), (None, 2), ("b", 2), ("zz", 5)):
        mine = await directory.list_tenants(after, limit)
        theirs = await store.list_tenants(after, limit)
        assert [(t.id, t.status, t.token_hash, t.webhook_url) for t in mine] == [
            (t.id, t.status, t.token_hash, t.webhook_url) for t in theirs
        ]
    assert await directory.count_tenants() == await store.count_tenants()


async def test_the_directory_answers_as_the_store(directory: TenantDirectory, store: Store) -> None:
    assert (await directory.get_tenant("before")) is not None  # loaded at start
    for name, status in (("a", "connected"), ("b", "stopped"), ("c", "connected")):
        await directory.create_tenant(TenantRecord(id=name, status=status, token_hash=f"h{name}"))
    with pytest.raises(TenantExists):
        await directory.create_tenant(TenantRecord(id="a"))
    await _same_as_the_store(directory, store)

    assert await directory.update_tenant("b", status="connected", webhook_url="http://x/h")
    assert await directory.update_tenant("c", token_hash="h-new")
    assert not await directory.update_tenant("missing", status="connected")
    await _same_as_the_store(directory, store)
    assert await directory.tenant_by_token_hash("hc") is None
    assert (await directory.tenant_by_token_hash("h-new")).id == "c"  # type: ignore[union-attr]

    assert await directory.delete_tenant("a")
    assert (
        await directory.get_tenant("a") is None
        and await directory.tenant_by_token_hash("ha") is None
    )
    await directory.create_tenant(TenantRecord(id="a"))  # a new life: nothing of the old one
    again = await directory.get_tenant("a")
    assert again is not None and again.token_hash is None and again.status == "stopped"
    await _same_as_the_store(directory, store)


async def test_a_record_handed_out_is_the_callers_own(directory: TenantDirectory) -> None:
    record = await directory.get_tenant("before")
    assert record is not None
    record.status = "banned"
    assert (await directory.get_tenant("before")).status == "connected"  # type: ignore[union-attr]
    assert await directory.count_tenants() == {"connected": 1}
