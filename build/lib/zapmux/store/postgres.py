"""PostgreSQL: the shared store of several nodes (row claims with FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from zapmux.store.sql import SqlStore


class PostgresStore(SqlStore):
    # Other nodes may hold claims right now: a dead node's claims are left to expire.
    single_node = False

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        rest = url.split("://", 1)[1]
        engine = create_async_engine(f"postgresql+asyncpg://{rest}", pool_size=10, max_overflow=10)
        return cls(engine)

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True)
