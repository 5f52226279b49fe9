"""The whatsmeow engine, server side: one worker process per tenant session.

``connect()`` spawns ``python -m zapmux.engines.whatsmeow.worker`` with two inherited
pipes (the channel, :mod:`.protocol`), waits for its hello and asks it to
connect; the worker's events are relayed to the session's sink in order, its
stdout/stderr go to the ``zapmux.tenant.<id>`` logger at debug level. A worker that
dies without having reported how its session ended (a crash, SIGKILL, OOM) becomes a
``Disconnected`` naming the exit, so the supervisor's backoff starts a new one.

This module never imports neonize: the server process must not load its Go library.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zapmux.engine import Engine, EventSink, NumberInfo, OutgoingMessage, SendResult, Session
from zapmux.engines.whatsmeow.process import WorkerProcess
from zapmux.engines.whatsmeow.protocol import encode_media
from zapmux.errors import TenantNotConnected
from zapmux.ids import validate_tenant_id

STORE_FILE = "whatsmeow.db"
_TIMEOUTS = {"connect": 30.0, "pair_phone": 60.0, "send": 120.0, "logout": 30.0}
_DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How worker processes are started (the defaults are production's)."""

    python: str = sys.executable
    proxy: str | None = None
    log_level: str = "INFO"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 5.0
    qr_first_s: float | None = None
    qr_next_s: float | None = None
    qr_total: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def worker_args(self) -> list[str]:
        args = ["--log-level", self.log_level]
        if self.proxy:
            args += ["--proxy", self.proxy]
        for flag, value in (
            ("--qr-first-s", self.qr_first_s),
            ("--qr-next-s", self.qr_next_s),
            ("--qr-total", self.qr_total),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args


class WhatsmeowEngine(Engine):
    """Real WhatsApp through neonize, each tenant in its own worker process.

    The tenant's whatsmeow store is ``AUTH_DIR/<tenant_id>/whatsmeow.db``. ``store``
    (zapmux's own) is accepted for symmetry with the other engines and not used.
    """

    name = "whatsmeow"

    def __init__(self, settings: Any, store: object = None, **options: Any) -> None:
        self.auth_dir = Path(settings.auth_dir)
        level = str(getattr(settings, "log_level", "INFO"))
        self.options = WorkerOptions(**{"log_level": level, **options})
        self._sessions: set[WhatsmeowSession] = set()

    def tenant_dir(self, tenant_id: str) -> Path:
        """Where the tenant's session lives (the id is checked before it touches a path)."""
        return self.auth_dir / validate_tenant_id(tenant_id)

    def open_session(self, tenant_id: str, sink: EventSink) -> WhatsmeowSession:
        session = WhatsmeowSession(tenant_id, sink, self.tenant_dir(tenant_id), self.options)
        self._sessions.add(session)
        return session

    async def is_paired(self, tenant_id: str) -> bool:
        return await asyncio.to_thread(has_device, self.tenant_dir(tenant_id) / STORE_FILE)

    async def wipe(self, tenant_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.tenant_dir(tenant_id), True)

    async def aclose(self) -> None:
        """Stop every worker this engine started."""
        sessions, self._sessions = list(self._sessions), set()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def has_device(store: Path) -> bool:
    """Whether a whatsmeow SQLite store holds a paired device (read without neonize)."""
    if not store.is_file():
        return False
    try:
        with sqlite3.connect(store.resolve().as_uri() + "?mode=ro", uri=True) as db:
            return db.execute("SELECT 1 FROM whatsmeow_device LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False  # created but never migrated, or not a store at all


class WhatsmeowSession(Session):
    """One tenant's session: at most one live worker, replaced on every connect()."""

    def __init__(self, tenant_id: str, sink: EventSink, home: Path, options: WorkerOptions):
        self.tenant_id, self.home, self.options = tenant_id, home, options
        self._sink = sink
        self._log = logging.getLogger(f"zapmux.tenant.{tenant_id}")
        self._run: WorkerProcess | None = None
        self._retired: set[WorkerProcess] = set()
        self._lock = asyncio.Lock()

    @property
    def worker_pid(self) -> int | None:
        """The live worker's pid, if one is running."""
        run = self._run
        return run.pid if run is not None and run.alive else None

    @property
    def last_worker_pid(self) -> int | None:
        """The pid of the latest worker, alive or not (for logs and diagnostics)."""
        return self._run.pid if self._run is not None else None

    async def connect(self) -> None:
        async with self._lock:
            await self._retire()
            self.home.mkdir(parents=True, exist_ok=True)
            run = WorkerProcess(self.tenant_id, self._sink, self.options, self._log)
            self._run = run
            await run.spawn(self.home / STORE_FILE)
            if await run.wait_ready():
                await run.request("connect", {}, _TIMEOUTS["connect"])

    async def disconnect(self) -> None:
        async with self._lock:
            await self._retire()

    async def logout(self) -> None:
        async with self._lock:
            run = self._run
            if run is not None and run.alive:
                try:
                    await run.request("logout", {}, _TIMEOUTS["logout"])
                finally:
                    await self._retire()
            # whatsmeow deletes its device on logout; remove the rest of the tenant's files.
            await asyncio.to_thread(shutil.rmtree, self.home, True)

    async def close(self) -> None:
        """Stop the worker and wait for everything this session owns."""
        await self.disconnect()
        retired, self._retired = list(self._retired), set()
        await asyncio.gather(*(r.wait_closed() for r in retired), return_exceptions=True)

    async def _retire(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        self._retired = {r for r in self._retired if not r.closed}
        self._retired.add(run)
        await run.stop()

    async def _request(self, op: str, args: dict[str, Any]) -> Any:
        run = self._run
        if run is None or not run.alive:
            raise TenantNotConnected(f"tenant {self.tenant_id} has no WhatsApp session running")
        return await run.request(op, args, _TIMEOUTS.get(op, _DEFAULT_TIMEOUT))

    async def pair_phone(self, phone: str) -> str:
        result = await self._request("pair_phone", {"phone": phone})
        return str(result["code"])

    async def send(self, message: OutgoingMessage) -> SendResult:
        result = await self._request("send", encode_outgoing(message))
        return SendResult(message_id=result["message_id"], timestamp=result["timestamp"])

    async def check(self, phones: Any) -> list[NumberInfo]:
        results = await self._request("check", {"phones": list(phones)})
        return [NumberInfo(r["phone"], r["exists"], r["jid"]) for r in results]

    async def mark_read(self, chat: str, sender: str, message_ids: Any) -> None:
        args = {"chat": chat, "sender": sender, "message_ids": list(message_ids)}
        await self._request("mark_read", args)


def encode_outgoing(message: OutgoingMessage) -> dict[str, Any]:
    """The ``send`` command's arguments."""
    media = encode_media(message.media) if message.media is not None else None
    return {"to": message.to, "text": message.text, "reply_to": message.reply_to, "media": media}
