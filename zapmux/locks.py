"""Locks by key (a tenant, a tenant's Idempotency-Key), kept only while in use."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    """One ``asyncio.Lock`` per key, forgotten once nobody holds or waits for it.

    Dropping a lock while a waiter still holds a reference would let a newcomer run
    beside that waiter; counting the users keeps the lock until the last one leaves.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: Hashable) -> _Hold:
        """``async with locks.hold(key):`` runs alone among the holders of ``key``."""
        return _Hold(self, key)

    def _join(self, key: Hashable) -> asyncio.Lock:
        entry = self._locks.get(key)
        lock, users = entry if entry is not None else (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        return lock

    def _leave(self, key: Hashable) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class _Hold:
    """The context of one :meth:`KeyedLocks.hold` (a class: the generator-based
    ``asynccontextmanager`` cost more than the lock itself, on every send)."""

    __slots__ = ("key", "lock", "locks")

    def __init__(self, locks: KeyedLocks, key: Hashable) -> None:
        self.locks = locks
        self.key = key

    async def __aenter__(self) -> None:
        self.lock = self.locks._join(self.key)
        try:
            await self.lock.acquire()
        except BaseException:  # cancelled while waiting: never held
            self.locks._leave(self.key)
            raise

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.lock.release()
        self.locks._leave(self.key)
