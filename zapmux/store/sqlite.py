"""SQLite: the embedded, single-node default (WAL, so readers never wait for the writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import create_async_engine

from zapmux.store.sql import SqlStore


class SqliteStore(SqlStore):
    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine("sqlite+aiosqlite:///" + path, connect_args={"timeout": 30})
        _set_pragmas(engine.sync_engine)
        if not path or path == ":memory:":
            return cls(engine)  # one database per connection: write through the pool
        # The writer's own connection (a plain sqlite3 one, in the writer's thread).
        writer = create_engine(
            "sqlite:///" + path, connect_args={"timeout": 30, "check_same_thread": False}
        )
        _set_pragmas(writer)
        return cls(engine, writer)


def _set_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # WAL + NORMAL survives a killed process (only an OS crash could lose the
        # last commits); busy_timeout makes a reader wait for a checkpoint, not fail.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
