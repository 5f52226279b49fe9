"""What every part of the SQL store shares: reads through the pool, writes through the
one :class:`~zapmux.store.writer.Writer`, and the few shapes of query they repeat."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Table, and_, delete, insert, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zapmux.store.writer import Writer

T = TypeVar("T")


class SqlTables:
    """The engine, the writer, and helpers over them; mixed into ``SqlStore``."""

    engine: AsyncEngine
    writer: Writer

    async def _write(self, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``job`` in the writer's next batch; its result once committed."""
        return await self.writer.write(job)

    async def _execute(self, stmt: Any, params: Any = None) -> CursorResult[Any]:
        """One writing statement, committed (in a batch)."""

        async def job(conn: AsyncConnection) -> CursorResult[Any]:
            return await conn.execute(stmt, params)

        return await self._write(job)

    async def _rowcount(self, stmt: Any, params: Any = None) -> int:
        return int((await self._execute(stmt, params)).rowcount or 0)

    async def _one(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        """The first row a read finds, or None."""
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt, params)).first()

    async def _all(self, stmt: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(stmt, params))

    async def _fresh(self, table: Table, stamp: str, max_age_s: float, **key: Any) -> Any:
        """The row of ``table`` at ``key`` if its ``stamp`` column is younger than
        ``max_age_s``, else None."""
        cond = [table.c[name] == value for name, value in key.items()]
        cond.append(table.c[stamp] > time.time() - max_age_s)
        return await self._one(select(table).where(and_(*cond)))

    async def _replace(self, table: Table, key: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        """Write ``row`` at ``key``, whatever was there (delete, then insert)."""

        async def job(conn: AsyncConnection) -> None:
            await replace(conn, table, key, row)

        await self._write(job)


async def replace(
    conn: AsyncConnection, table: Table, key: Mapping[str, Any], row: Mapping[str, Any]
) -> None:
    """Delete the row at ``key`` and insert ``row``, on ``conn`` (inside a write job)."""
    await conn.execute(delete(table).where(and_(*(table.c[k] == v for k, v in key.items()))))
    await conn.execute(insert(table).values(**row))
