"""Where each tenant's whatsmeow session (device keys, signal sessions…) is kept.

Chosen from ``ZAPMUX_DATABASE_URL`` like zapmux's own store:

- SQLite (the default): ``AUTH_DIR/<tenant_id>/whatsmeow.db``, one file per tenant.
- PostgreSQL: one schema per tenant, ``wa_<tenant>`` (:func:`schema_name`), in the
  shared database. whatsmeow's store can hold several devices but neonize opens the
  first one it finds, so tenants must never share a schema. The worker reaches its
  schema through ``search_path`` in the store URL.

The server side reads and deletes these stores without neonize (sqlite3 / asyncpg);
only the worker opens them through whatsmeow.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from zapmux.ids import validate_tenant_id

STORE_FILE = "whatsmeow.db"
SCHEMA_PREFIX = "wa_"
_PG_IDENTIFIER_MAX = 63
_HASH_CHARS = 16
_PLAIN = re.compile(r"[a-z0-9_]+")
_HASHED = re.compile(rf".*_[0-9a-f]{{{_HASH_CHARS}}}")


class WhatsmeowStore(ABC):
    """The whatsmeow stores of every tenant of one engine."""

    @abstractmethod
    async def prepare(self, tenant_id: str) -> str:
        """Make the tenant's store ready to open; return what the worker opens it with."""

    @abstractmethod
    async def is_paired(self, tenant_id: str) -> bool:
        """Whether the tenant's store holds a paired device."""

    @abstractmethod
    async def wipe(self, tenant_id: str) -> None:
        """Delete the tenant's store, if any."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def open_whatsmeow_store(auth_dir: Path, database_url: str | None) -> WhatsmeowStore:
    """The store for zapmux's database URL: PostgreSQL schemas, else SQLite files."""
    scheme = (database_url or "").split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in {"postgresql", "postgres"}:
        assert database_url is not None
        return PostgresWhatsmeowStore(database_url)
    return SqliteWhatsmeowStore(auth_dir)


class SqliteWhatsmeowStore(WhatsmeowStore):
    """One SQLite file per tenant: ``AUTH_DIR/<tenant_id>/whatsmeow.db``."""

    def __init__(self, auth_dir: Path) -> None:
        self.auth_dir = Path(auth_dir)

    def tenant_dir(self, tenant_id: str) -> Path:
        """Where the tenant's session lives (the id is checked before it touches a path)."""
        return self.auth_dir / validate_tenant_id(tenant_id)

    async def prepare(self, tenant_id: str) -> str:
        home = self.tenant_dir(tenant_id)
        await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
        return str(home / STORE_FILE)

    async def is_paired(self, tenant_id: str) -> bool:
        return await asyncio.to_thread(has_device, self.tenant_dir(tenant_id) / STORE_FILE)

    async def wipe(self, tenant_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.tenant_dir(tenant_id), True)


def has_device(store: Path) -> bool:
    """Whether a whatsmeow SQLite store holds a paired device (read without neonize)."""
    if not store.is_file():
        return False
    try:
        with sqlite3.connect(store.resolve().as_uri() + "?mode=ro", uri=True) as db:
            return db.execute("SELECT 1 FROM whatsmeow_device LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False  # created but never migrated, or not a store at all


def schema_name(tenant_id: str) -> str:
    """The tenant's PostgreSQL schema: ``wa_<id>`` when the id is already a plain
    lowercase identifier that fits, else ``wa_<sanitized>_<hash of the id>``.

    Tenant ids are case-sensitive, may hold ``.`` and ``-`` and be 64 characters long;
    PostgreSQL identifiers are at most 63 and unquoted ones fold case. The hash keeps
    ``Acme`` and ``acme`` apart; a plain id that happens to end like a hash suffix is
    hashed too, so the two forms never meet.
    """
    tenant_id = validate_tenant_id(tenant_id)
    room = _PG_IDENTIFIER_MAX - len(SCHEMA_PREFIX)
    if _PLAIN.fullmatch(tenant_id) and len(tenant_id) <= room and not _HASHED.fullmatch(tenant_id):
        return SCHEMA_PREFIX + tenant_id
    plain = re.sub(r"[^a-z0-9_]", "_", tenant_id.lower())[: room - _HASH_CHARS - 1]
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:_HASH_CHARS]
    return f"{SCHEMA_PREFIX}{plain}_{digest}"


def worker_store_url(database_url: str, schema: str) -> str:
    """The URL the worker gives neonize: lib/pq's ``postgres://`` with the schema first
    in ``search_path`` (lib/pq sends unknown parameters to the server as settings).

    lib/pq defaults to ``sslmode=require``; zapmux's other driver (asyncpg), like
    libpq, to ``prefer``: the same default is made explicit here.
    """
    parts = urlsplit(database_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    if not any(k == "sslmode" for k, _ in query):
        query.append(("sslmode", "prefer"))
    query.append(("search_path", schema))
    return urlunsplit(("postgres", parts.netloc, parts.path, urlencode(query), ""))


def asyncpg_dsn(database_url: str) -> str:
    """zapmux's URL (``postgresql[+driver]://…``) as asyncpg takes it."""
    return "postgresql://" + database_url.split("://", 1)[1]


class PostgresWhatsmeowStore(WhatsmeowStore):
    """One schema per tenant in zapmux's PostgreSQL database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        import asyncpg

        async with self._pool_lock:
            if self._pool is None:
                dsn = asyncpg_dsn(self.database_url)
                self._pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2)
            pool = self._pool
        async with pool.acquire() as conn:
            yield conn

    async def prepare(self, tenant_id: str) -> str:
        """Create the schema, and whatsmeow's version table inside it.

        whatsmeow (go.mau.fi/util/dbutil) asks ``information_schema`` whether its
        version table exists without naming a schema: once one tenant has a store,
        every new schema would look migrated and the worker would fail on the missing
        table. Creating the (empty) version table as dbutil would makes it migrate
        from version 0, into this schema.
        """
        schema = schema_name(tenant_id)
        async with self._connect() as conn, conn.transaction():
            # Two nodes may prepare the same tenant at once: IF NOT EXISTS is not atomic.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".whatsmeow_version '
                "(version INTEGER, compat INTEGER)"
            )
        return worker_store_url(self.database_url, schema)

    async def is_paired(self, tenant_id: str) -> bool:
        schema = schema_name(tenant_id)
        async with self._connect() as conn:
            if (
                await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".whatsmeow_device')
                is None
            ):
                return False
            query = f'SELECT EXISTS (SELECT 1 FROM "{schema}".whatsmeow_device)'
            return bool(await conn.fetchval(query))

    async def wipe(self, tenant_id: str) -> None:
        schema = schema_name(tenant_id)
        async with self._connect() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    async def aclose(self) -> None:
        async with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
