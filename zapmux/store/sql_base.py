"""What every part of the SQL store shares: reads through the pool, writes through the
one :class:`~zapmux.store.writer.Writer`, and the few shapes of query they repeat."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    delete,
    insert,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from zapmux.store.guard import in_life
from zapmux.store.rows import record
from zapmux.store.writer import Lanes, Reader, Writer

T = TypeVar("T")
R = TypeVar("R")


class SqlTables:
    """The engine, the writer, and helpers over them; mixed into ``SqlStore``."""

    engine: AsyncEngine
    writer: Writer | Lanes
    reader: Reader

    async def _write(
        self, job: Callable[[Connection], T], lane: str | None = None, quick: bool = False
    ) -> T:
        """Run ``job`` in the writer's next batch; its result once committed (``lane``:
        see ``writer.Lanes``; ``quick``: a write of a few rows by key, see
        ``writer.Writer``)."""
        return await self.writer.write(job, lane, quick)

    def _notify(self, conn: Connection, topic: str, key: str) -> None:
        """Tell the other nodes, when the transaction of ``conn`` commits, that ``key``
        of ``topic`` changed (``base.ChangeFeed``). No other node shares this store."""

    async def _execute(self, stmt: Any, params: Any = None) -> int:
        """One writing statement, committed (in a batch); the rows it touched."""

        def job(conn: Connection) -> int:
            return int(conn.execute(stmt, params).rowcount or 0)

        return await self._write(job)

    async def _one(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        """The first row a read finds, or None."""
        return await self.reader.read(lambda conn: conn.execute(stmt, params).first())

    async def _all(self, stmt: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        return await self.reader.read(lambda conn: list(conn.execute(stmt, params)))

    async def _record_of(
        self, cls: type[R], stmt: Any, params: Mapping[str, Any] | None = None
    ) -> R | None:
        """The first row a read finds as a record of ``cls``, or None."""
        row = await self._one(stmt, params)
        return None if row is None else record(cls, row)

    async def _records(
        self, cls: type[R], stmt: Any, params: Mapping[str, Any] | None = None
    ) -> list[R]:
        """Every row a read finds, as records of ``cls``."""
        return [record(cls, row) for row in await self._all(stmt, params)]

    async def _find(self, cls: type[R], table: Table, **key: Any) -> R | None:
        """The row of ``table`` at ``key`` (column=value) as a record of ``cls``, or None."""
        return await self._record_of(cls, select(table).where(matching(table, key)))

    async def _fresh(self, table: Table, stamp: str, max_age_s: float, **key: Any) -> Any:
        """The row of ``table`` at ``key`` if its ``stamp`` column is younger than
        ``max_age_s``, else None."""
        young = table.c[stamp] > time.time() - max_age_s
        return await self._one(select(table).where(and_(matching(table, key), young)))

    async def _replace(
        self,
        table: Table,
        key: Mapping[str, Any],
        row: Mapping[str, Any],
        incarnation: str | None = None,
    ) -> None:
        """Write ``row`` at ``key``, whatever was there (delete, then insert); with
        ``incarnation``, only while that life of the key's tenant exists."""

        def job(conn: Connection) -> None:
            with in_life(conn, key.get("tenant_id"), incarnation):
                replace(conn, table, key, row)

        await self._write(job)


def matching(table: Table, key: Mapping[str, Any]) -> ColumnElement[bool]:
    """The rows of ``table`` whose columns hold ``key``'s values."""
    return and_(*(table.c[name] == value for name, value in key.items()))


def replace(conn: Connection, table: Table, key: Mapping[str, Any], row: Mapping[str, Any]) -> None:
    """Delete the row at ``key`` and insert ``row``, on ``conn`` (inside a write job)."""
    conn.execute(delete(table).where(matching(table, key)))
    conn.execute(insert(table).values(**row))


def literal_list(*values: str) -> list[Any]:
    """An IN list of fixed values (statuses), written into the SQL: a driver statement
    takes no expanding parameter, and SQLite builds a table for an IN list of bound
    parameters on every run (a receipt's UPDATE took 35 us that way, 5 us so)."""
    assert all("'" not in value for value in values)
    return [literal_column(f"'{value}'") for value in values]
