"""The baseline of the send benchmark: the same work done bare.

A raw ASGI app (no framework) that reads the request, parses the same JSON and does
one durable ``INSERT`` + ``COMMIT``: on SQLite through one aiosqlite connection (WAL,
``synchronous=NORMAL``, as zapmux's store), on PostgreSQL through an asyncpg pool.
Served by the same uvicorn as zapmux: ``BARE_DATABASE=<sqlite path | postgresql URL>
uvicorn bench.bare:app``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

_db: Any = None
_CREATE = (
    "CREATE TABLE IF NOT EXISTS bare_messages (id {serial} PRIMARY KEY, tenant_id TEXT, "
    "message_id TEXT, phone TEXT, text TEXT, created_at FLOAT)"
)
_INSERT = "INSERT INTO bare_messages (tenant_id, message_id, phone, text, created_at) VALUES "
_INSERT_PG = _INSERT + "($1, $2, $3, $4, $5)"
_INSERT_SQLITE = _INSERT + "(?, ?, ?, ?, ?)"


async def _open() -> None:
    global _db
    target = os.environ["BARE_DATABASE"]
    if target.startswith("postgresql://"):
        import asyncpg

        _db = await asyncpg.create_pool(target, min_size=10, max_size=10)
        await _db.execute(_CREATE.format(serial="SERIAL"))
        return
    import aiosqlite

    _db = await aiosqlite.connect(target)
    await _db.execute("PRAGMA journal_mode=WAL")
    await _db.execute("PRAGMA synchronous=NORMAL")
    await _db.execute(_CREATE.format(serial="INTEGER"))
    await _db.commit()


async def _insert(row: tuple[Any, ...]) -> None:
    if hasattr(_db, "acquire"):  # asyncpg: each execute commits on its own
        await _db.execute(_INSERT_PG, *row)
        return
    await _db.execute(_INSERT_SQLITE, row)
    await _db.commit()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    data = json.loads(body)
    message_id = "ZM" + secrets.token_hex(10).upper()
    tenant = scope["path"].rsplit("/", 1)[-1]
    await _insert((tenant, message_id, data["phone"], data.get("message"), time.time()))
    answer = json.dumps({"success": True, "message_id": message_id, "status": "sent"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": answer})
