"""SQLite: the embedded, single-node default (WAL, so readers never wait for the writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from zapmux.store.sql import SqlStore


class SqliteStore(SqlStore):
    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine("sqlite+aiosqlite:///" + path, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            # WAL + NORMAL survives a killed process (only an OS crash could lose the
            # last commits); busy_timeout makes concurrent writers wait, not fail.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return cls(engine)
