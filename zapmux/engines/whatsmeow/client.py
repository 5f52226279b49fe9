"""The whatsmeow engine, server side: one long-lived worker process per running tenant.

The first ``connect()`` spawns ``python -m zapmux.engines.whatsmeow.worker`` with two
inherited pipes (the channel, :mod:`.protocol`), waits for its hello and asks it to
connect; later ones (after the supervisor's backoff) ask the same worker to dial
again. The worker's events are relayed to the session's sink in order, its
stdout/stderr go to the ``zapmux.tenant.<id>`` logger at debug level. A new process
is started only after a crash, a hang (no heartbeat), ``max_dials`` dials (neonize
leaks a store connection per dial), or when the worker outgrew ``max_rss_mb`` (then
replaced while idle). A worker that dies mid-dial (a crash, SIGKILL, OOM) becomes a
``Disconnected`` naming the exit, so the supervisor's backoff starts a new one.

This module never imports neonize: the server process must not load its Go library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zapmux import events as ev
from zapmux.backoff import Backoff
from zapmux.engines.base import (
    Engine,
    EventSink,
    NotConnected,
    NumberInfo,
    OutgoingMessage,
    SendResult,
    Session,
)
from zapmux.engines.whatsmeow.process import DEFAULT_MEDIA_MAX_BYTES, WorkerOptions, WorkerProcess
from zapmux.engines.whatsmeow.protocol import MAX_MEDIA_BYTES, encode_media
from zapmux.engines.whatsmeow.store import WhatsmeowStore, open_whatsmeow_store
from zapmux.errors import EngineError, SendLater, ZapmuxError

_TIMEOUTS = {"connect": 30.0, "pair_phone": 60.0, "send": 120.0, "logout": 30.0}
_DEFAULT_TIMEOUT = 30.0


@dataclass(slots=True)
class SendThrottle:
    """How long a tenant's sends pause after WhatsApp's rate-overlimit: 5 s, doubling
    on each refusal in a row up to 5 min; the first send that goes through resets it.
    While paused, sends fail at once with ``SendLater`` (the message stays queued)
    without asking WhatsApp."""

    backoff: Backoff = field(default_factory=lambda: Backoff(5.0, 300.0))
    refusals: int = 0
    until: float = 0.0

    def check(self, now: float) -> None:
        if now < self.until:
            raise SendLater(
                "WhatsApp is limiting this number's sends (rate-overlimit)",
                retry_after=self.until - now,
            )

    def refused(self, now: float) -> float:
        """Record a refusal; the pause it starts, in seconds."""
        self.refusals += 1
        pause = self.backoff.ceiling(self.refusals)
        self.until = now + pause
        return pause

    def passed(self) -> None:
        self.refusals, self.until = 0, 0.0


class WhatsmeowEngine(Engine):
    """Real WhatsApp through neonize, each tenant in its own worker process.

    Each tenant's whatsmeow store is ``AUTH_DIR/<tenant_id>/whatsmeow.db`` with SQLite,
    its own schema with ``ZAPMUX_DATABASE_URL=postgresql://…`` (:mod:`.store`);
    zapmux's own store is never touched.
    """

    name = "whatsmeow"

    def __init__(self, settings: Any, **options: Any) -> None:
        self.auth_dir = Path(settings.auth_dir)
        self.whatsmeow_store = open_whatsmeow_store(
            self.auth_dir, getattr(settings, "database_url", None)
        )
        defaults = {
            "log_level": str(getattr(settings, "log_level", "INFO")),
            "bot_tag": bool(getattr(settings, "whatsmeow_bot_tag", False)),
            "max_rss_mb": getattr(settings, "whatsmeow_worker_max_rss_mb", None),
            "media_max_bytes": min(
                int(getattr(settings, "media_max_bytes", DEFAULT_MEDIA_MAX_BYTES)),
                MAX_MEDIA_BYTES,
            ),
        }
        self.options = WorkerOptions(**{**defaults, **options})
        self._sessions: set[WhatsmeowSession] = set()

    def open_session(self, tenant_id: str, sink: EventSink) -> WhatsmeowSession:
        session = WhatsmeowSession(tenant_id, sink, self.whatsmeow_store, self.options)
        self._sessions.add(session)
        return session

    async def is_paired(self, tenant_id: str) -> bool:
        return await self.whatsmeow_store.is_paired(tenant_id)

    async def wipe(self, tenant_id: str) -> None:
        await self.whatsmeow_store.wipe(tenant_id)

    async def aclose(self) -> None:
        """Stop every worker this engine started, then close the store's connections."""
        sessions, self._sessions = list(self._sessions), set()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        await self.whatsmeow_store.aclose()


class WhatsmeowSession(Session):
    """One tenant's session: at most one live worker, which dials again on each
    connect() while it can (see the module's docstring for when it is replaced)."""

    def __init__(
        self, tenant_id: str, sink: EventSink, store: WhatsmeowStore, options: WorkerOptions
    ) -> None:
        self.tenant_id, self.store, self.options = tenant_id, store, options
        self._sink = sink
        self._log = logging.getLogger(f"zapmux.tenant.{tenant_id}")
        self._run: WorkerProcess | None = None
        self._retired: set[WorkerProcess] = set()
        self._recycling: asyncio.Task[None] | None = None
        self._throttle = SendThrottle()
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
            run = self._run
            if run is None or not self._reusable(run):
                await self._retire()
                run = await self._spawn(self._sink)
                if not await run.wait_ready():
                    return  # its exit is reported as a Disconnected
            await run.request("connect", {}, _TIMEOUTS["connect"])

    def _reusable(self, run: WorkerProcess) -> bool:
        """Whether the worker can dial again, or a new process must (and why not)."""
        if not run.idle_between_dials:
            return False
        why = None
        if run.dials >= self.options.max_dials:
            why = f"it dialed {run.dials} times"
        elif run.over_memory_ceiling():
            why = f"it uses {run.rss_kb // 1024} MB (ceiling {self.options.max_rss_mb} MB)"
        if why:
            self._log.info("♻️ replacing whatsmeow worker %s: %s", run.pid, why)
        return why is None

    async def pause(self) -> bool:
        """Keep the worker: it stopped its client and waits for the next connect()."""
        return True

    async def _spawn(self, sink: EventSink) -> WorkerProcess:
        try:
            location = await self.store.prepare(self.tenant_id)
        except ZapmuxError:
            raise
        except Exception as exc:  # OSError, asyncpg's errors: the store is unreachable
            raise EngineError(f"cannot open the whatsmeow store: {exc}") from exc
        run = WorkerProcess(self.tenant_id, sink, self.options, self._log)
        run.on_heartbeat = self._on_heartbeat
        self._run = run
        await run.spawn(location)
        return run

    def _on_heartbeat(self, run: WorkerProcess) -> None:
        """Replace a connected worker that outgrew the memory ceiling, once it is idle."""
        if run is not self._run or self._recycling is not None or self._lock.locked():
            return
        idle = run.quiet_for() >= self.options.recycle_idle_s
        if run.worker_state == "connected" and idle and run.over_memory_ceiling():
            self._recycling = asyncio.create_task(
                self._recycle(run), name=f"whatsmeow-recycle-{self.tenant_id}"
            )

    async def _recycle(self, run: WorkerProcess) -> None:
        try:
            async with self._lock:
                if run is not self._run or not run.alive:
                    return
                self._log.info("♻️ whatsmeow worker %s uses %d MB (ceiling %d MB); "
                               "replacing it while the tenant is idle", run.pid,
                               run.rss_kb // 1024, self.options.max_rss_mb)  # fmt: skip
                await self._retire()
                fresh = await self._spawn(self._sink)
                if await fresh.wait_ready():
                    await fresh.request("connect", {}, _TIMEOUTS["connect"])
        except Exception:
            self._log.exception("❌ replacing the whatsmeow worker failed")
        finally:
            self._recycling = None

    async def disconnect(self) -> None:
        async with self._lock:
            await self._retire()

    async def logout(self) -> None:
        """Unlink the device from the phone, then wipe the store.

        With no worker running, one is started on the stored session just to log out
        (bounded by ``logout_timeout_s``). When WhatsApp cannot be reached the store is
        wiped anyway, and a warning says the phone may still list the device.
        """
        async with self._lock:
            run = self._run
            parked = run if run is not None and run.idle_between_dials else None
            if run is not None and run.alive and parked is None:
                problem = await self._logout_through(run)
            elif await self.store.is_paired(self.tenant_id):
                problem = await self._logout_with_worker(parked)
            else:
                problem = None
            await self._retire()
            if problem:
                self._log.warning(
                    "could not unlink the device from WhatsApp (%s); the local session "
                    "is deleted but the phone may still list it under Linked devices",
                    problem,
                )
            await self.store.wipe(self.tenant_id)

    async def _logout_through(self, run: WorkerProcess) -> str | None:
        """Ask a live worker to log out; what went wrong, or None."""
        try:
            await run.request("logout", {}, _TIMEOUTS["logout"])
        except ZapmuxError as exc:
            return str(exc)
        return None

    async def _logout_with_worker(self, parked: WorkerProcess | None) -> str | None:
        """Connect a worker (the idle one, else a new one) on the stored session only to
        log out; what went wrong, or None."""
        outcomes: asyncio.Queue[ev.Event] = asyncio.Queue()
        try:
            async with asyncio.timeout(self.options.logout_timeout_s):
                if parked is not None:
                    run = parked
                    run.redirect(outcomes.put)
                else:
                    run = await self._spawn(outcomes.put)
                    if not await run.wait_ready():
                        return "the worker did not start"
                await run.request("connect", {}, _TIMEOUTS["connect"])
                while not isinstance(event := await outcomes.get(), ev.Connected):
                    if isinstance(event, ev.Disconnected) and event.detail:
                        return f"{event.reason}: {event.detail}"
                    if isinstance(event, ev.Disconnected | ev.PermanentDisconnect):
                        return event.reason
                    if isinstance(event, ev.QrCode | ev.QrTimeout):
                        return "the stored session is no longer valid"
                return await self._logout_through(run)
        except TimeoutError:
            return f"WhatsApp did not answer within {self.options.logout_timeout_s:g} s"
        except ZapmuxError as exc:
            return str(exc)

    async def close(self) -> None:
        """Stop the worker and wait for everything this session owns."""
        if self._recycling is not None:
            self._recycling.cancel()
            with contextlib.suppress(BaseException):
                await self._recycling
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
            raise NotConnected(f"tenant {self.tenant_id} has no WhatsApp session running")
        return await run.request(op, args, _TIMEOUTS.get(op, _DEFAULT_TIMEOUT))

    async def pair_phone(self, phone: str) -> str:
        result = await self._request("pair_phone", {"phone": phone})
        return str(result["code"])

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send through the worker; ``SendLater`` (the queue tries again after its
        ``retry_after``) while WhatsApp's rate-overlimit pause lasts (:class:`SendThrottle`)."""
        self._throttle.check(time.time())
        try:
            result = await self._request("send", encode_outgoing(message))
        except SendLater as exc:
            pause = self._throttle.refused(time.time())
            raise SendLater(exc.message, retry_after=pause) from exc
        self._throttle.passed()
        return SendResult(
            message_id=result["message_id"],
            timestamp=result["timestamp"],
            poll_secret=result.get("poll_secret"),
        )

    async def check(self, phones: Any) -> list[NumberInfo]:
        results = await self._request("check", {"phones": list(phones)})
        return [NumberInfo(r["phone"], r["exists"], r["jid"]) for r in results]

    async def mark_read(self, chat: str, sender: str, message_ids: Any) -> None:
        args = {"chat": chat, "sender": sender, "message_ids": list(message_ids)}
        await self._request("mark_read", args)


def encode_outgoing(message: OutgoingMessage) -> dict[str, Any]:
    """The ``send`` command's arguments.

    ``message.message_id`` (zapmux's id) is not sent: neonize 0.5.2's ``SendMessage``
    takes no ``SendRequestExtra``, so whatsmeow picks the id, and the worker returns it
    for zapmux to match receipts against (docs/whatsmeow.md, "Message ids").
    """
    media = encode_media(message.media) if message.media is not None else None
    options = list(message.options) if message.options else None
    return {
        "to": message.to,
        "text": message.text,
        "reply_to": message.reply_to,
        "media": media,
        "options": options,
    }
