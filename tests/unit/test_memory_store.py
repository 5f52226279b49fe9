"""The in-memory store's own surface: how it is opened and reset (its contract with
every other store is ``tests/contract/test_store_contract.py``)."""

from __future__ import annotations

import pytest

from tests.helpers import message_record
from zapmux.store import open_store
from zapmux.store.memory import MemoryStore
from zapmux.store.records import TenantRecord


def test_memory_urls_open_a_new_memory_store_each() -> None:
    first, second = open_store("memory://"), open_store("memory://")
    assert isinstance(first, MemoryStore) and isinstance(second, MemoryStore)
    assert first.tables is not second.tables
    with pytest.raises(ValueError, match="memory://"):
        open_store("mysql://db")


async def test_reset_forgets_everything() -> None:
    store = MemoryStore()
    await store.create_tenant(TenantRecord(id="t"))
    await store.add_message(message_record("t", "m"))
    await store.sandbox_set_phone("5511999999999", True)
    store.reset()
    assert await store.list_tenants() == []
    assert await store.get_message("t", "m") is None
    assert await store.sandbox_phones(["5511999999999"]) == {}
    assert (await store.add_message(message_record("t", "m"))).id == 1  # ids start again
