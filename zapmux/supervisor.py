"""Per-tenant lifecycle: states, reconnect backoff, the QR policy, the start throttle.

Each tenant has a :class:`TenantRunner` that owns its engine session and turns engine
events into state. Transient drops reconnect with full-jitter backoff; permanent ends
(logged out, replaced, banned, failed) and an unscanned QR stop and wait for a person.
Every change of state is persisted (any node can answer for it) and published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zapmux.backoff import Backoff
from zapmux.config import Settings
from zapmux.engines import Engines
from zapmux.engines.base import Engine, Session
from zapmux.errors import Conflict, TenantNotFound
from zapmux.events import (
    Banned,
    Connected,
    Disconnected,
    Event,
    Failed,
    IncomingMessage,
    LoggedOut,
    PairSuccess,
    PermanentDisconnect,
    QrCode,
    QrTimeout,
    Receipt,
    Replaced,
    storable,
)
from zapmux.metrics import Metrics
from zapmux.reasons import reason
from zapmux.states import PERMANENT, Status
from zapmux.store.base import Store, TenantStore
from zapmux.store.records import TenantRecord
from zapmux.tasks import TaskGroup

HANDSHAKE_TIMEOUT_S = 30.0
JIDS_KEPT = 1000  # WhatsApp's answers a runner keeps in memory (the store keeps all)
EventHandler = Callable[[str, Event], Awaitable[None]]
_PERMANENT_STATUS: dict[type[PermanentDisconnect], Status] = {
    LoggedOut: Status.LOGGED_OUT,
    Replaced: Status.REPLACED,
    Banned: Status.BANNED,
    Failed: Status.FAILED,
}


class TenantRunner:
    """One tenant's connection lifecycle."""

    def __init__(self, sup: Supervisor, record: TenantRecord, engine: Engine) -> None:
        self.sup = sup
        self.tenant_id = record.id
        self.engine = engine  # the tenant's own: engines of every kind run side by side
        self.incarnation = record.incarnation  # this runner's life of the tenant id
        self.log = logging.getLogger(f"zapmux.tenant.{record.id}")
        self.status = Status(record.status)
        self.since = record.since or time.time()
        self.last_error = record.last_error
        self.detail = record.detail  # the raw error behind last_error, when put in words
        self.phone, self.push_name, self.jid = record.phone, record.push_name, record.jid
        self.attempts = 0
        self.next_retry_at: float | None = None
        self.connected_at: float | None = None
        self.qr: QrCode | None = None
        self.session: Session | None = None
        self._paused: Session | None = None  # kept across a reconnect (Session.pause)
        self.lock = asyncio.Lock()
        # Set once this node lets the tenant go (another node has it, or it was
        # deleted): from then on nothing may open a session through this runner.
        self.released = False
        # Owned here, written through to the store by the sender: how many of the
        # tenant's messages wait (None until counted), and WhatsApp's fresh answers
        # per phone number (exists, JID, when asked).
        self.queued: int | None = None
        self.jids: dict[str, tuple[bool, str | None, float]] = {}
        self._handshake = asyncio.Event()
        self._retry: asyncio.Task[None] | None = None

    # --- what a person (or the server start) asks ------------------------------------
    async def start(self) -> None:
        """Connect (pairing by QR when unpaired) unless already on the way."""
        async with self.lock:
            if self.session is not None or self.released:
                return
            await self._set(Status.CONNECTING, last_error=None)
            session = self._open()
        await self._connect(session)

    async def start_and_wait(self, limit_s: float) -> None:
        """Start in the background; return at its first outcome (a QR code, connected,
        a failure) or after ``limit_s``, whichever comes first."""
        self._handshake.clear()
        self.sup.tasks.spawn(f"start-{self.tenant_id}", self.start())
        await self.wait_handshake(limit_s)

    async def stop(self, status: Status = Status.STOPPED) -> None:
        async with self.lock:
            await self._close()
            self.attempts = 0
            await self._set(status)

    async def logout(self) -> None:
        async with self.lock:
            self._cancel_retry()
            session, self.session = self.session or self._paused, None
            self._paused = None
            # Not running: a session of its own still unlinks the device (emits nothing).
            session = session or self.engine.open_session(self.tenant_id, self._on_event)
            with contextlib.suppress(Exception):
                await session.logout()
            await self.engine.wipe(self.tenant_id)
            self.phone = self.push_name = self.jid = None
            self.attempts = 0
            await self._set(Status.LOGGED_OUT, last_error="logged out by request")

    async def pair_code(self, phone: str) -> str:
        if self.session is None:
            await self.start()  # returns once the first QR (or another outcome) is in
        elif self.status == Status.CONNECTING:
            await self.wait_handshake()
        if self.session is None or self.status != Status.AWAITING_QR:
            raise Conflict(
                f"tenant is {self.status.value}; pairing codes need an unpaired tenant",
                code="not_pairing",
                status=self.status.value,
            )
        return await self.session.pair_phone(phone)

    async def wait_handshake(self, limit_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._handshake.wait(), limit_s)

    # --- the session ------------------------------------------------------------------
    def _open(self) -> Session:
        """The session to connect: the one paused by the last disconnect, else a new one."""
        self._cancel_retry()
        self._handshake.clear()
        paused, self._paused = self._paused, None
        self.session = paused or self.engine.open_session(self.tenant_id, self._on_event)
        return self.session

    async def _connect(self, session: Session) -> None:
        """Connect through the start gate (bounded simultaneous handshakes), outside the
        runner's lock so that a stop never waits for a handshake."""
        async with self.sup.start_gate:
            if self.session is not session:
                return  # stopped while waiting at the gate
            try:
                await session.connect()
            except Exception as exc:
                self.log.exception("❌ connect failed")
                if self.session is session:
                    await self._handle(Disconnected(f"connect failed: {exc}"))
                return
            await self.wait_handshake()

    async def _close(self, pause: bool = False) -> None:
        """Close the session; with ``pause`` (a reconnect will follow) the engine may keep
        it for the next connect (``Session.pause``)."""
        self._cancel_retry()
        session, self.session = self.session, None
        paused, self._paused = self._paused, None
        self.qr = None
        self._handshake.set()  # whoever waits at the gate for this session can go
        for old in (paused, session):
            if old is None:
                continue
            try:
                if pause and old is session and await old.pause():
                    self._paused = old
                else:
                    await old.disconnect()
            except Exception:
                self.log.exception("❌ disconnect failed")

    def _cancel_retry(self) -> None:
        if self._retry and self._retry is not asyncio.current_task():
            self._retry.cancel()
        self._retry = None
        self.next_retry_at = None

    async def _on_event(self, event: Event) -> None:
        """The engine's sink. Raises only for a message or receipt it could not record
        (the engine must not acknowledge it); other failures are logged."""
        event = storable(event)  # NUL, which PostgreSQL cannot hold, kept visibly
        try:
            await self._handle(event)
        except Exception:
            self.log.exception("❌ handling %s failed", type(event).__name__)
            if isinstance(event, IncomingMessage | Receipt):
                raise  # not acknowledged: the engine will hand it over again

    async def _handle(self, event: Event) -> None:
        if isinstance(event, IncomingMessage | Receipt):
            await self.sup.on_engine_event(self.tenant_id, event)
            return
        if isinstance(event, QrCode):
            self.qr = event
            self.log.info("📱 QR code %d/%d ready", event.index, event.total)
            await self._set(Status.AWAITING_QR)
        elif isinstance(event, PairSuccess):
            self.phone, self.jid, self.push_name = event.phone, event.jid, event.push_name
            self.log.info("✅ paired with %s", event.phone)
        elif isinstance(event, Connected):
            await self._connected(event)
        elif isinstance(event, QrTimeout):
            await self._close()
            self.log.warning("❌ QR codes ran out unscanned; waiting for a new request")
            await self._set(Status.QR_TIMEOUT, last_error="QR code not scanned in time")
        elif isinstance(event, Disconnected):
            await self._disconnected(event)
        elif isinstance(event, PermanentDisconnect):
            await self._ended(event)
        self._handshake.set()

    async def _connected(self, event: Connected) -> None:
        self.qr = None
        self.phone = event.phone or self.phone
        self.push_name = event.push_name or self.push_name
        self.jid = event.jid or self.jid
        self.connected_at = time.time()
        self.next_retry_at = None
        self.log.info("✅ connected to WhatsApp as %s", self.phone)
        await self._set(Status.CONNECTED, last_error=None)
        await self.sup.on_engine_event(self.tenant_id, event)

    async def _disconnected(self, event: Disconnected) -> None:
        await self._close(pause=True)
        stable = self.sup.settings.stable_after_s
        if self.connected_at and time.time() - self.connected_at >= stable:
            self.attempts = 0  # it had been fine for a while: start the backoff over
        self.connected_at = None
        self.attempts += 1
        self.sup.metrics.inc("reconnect_attempts_total")
        delay = self.sup.backoff.delay(self.attempts)
        self.next_retry_at = time.time() + delay
        self.log.warning(
            "🔄 disconnected (%s); retry %d in %.1fs", event.reason, self.attempts, delay
        )
        self._retry = self.sup.tasks.spawn(f"retry-{self.tenant_id}", self._retry_after(delay))
        await self._set(Status.RECONNECTING, last_error=event.reason, detail=event.detail)

    async def _retry_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:
            self._retry = None
            if self.session is not None or self.released or self.status != Status.RECONNECTING:
                return
            self.next_retry_at = None
            await self._set(Status.CONNECTING)
            session = self._open()
            self.sup.metrics.inc("worker_restarts_total")
        await self._connect(session)

    async def _ended(self, event: PermanentDisconnect) -> None:
        await self._close()
        status = _PERMANENT_STATUS.get(type(event), Status.FAILED)
        if status == Status.LOGGED_OUT:
            await self.engine.wipe(self.tenant_id)
            self.phone = self.push_name = self.jid = None
        self.connected_at = None
        self.log.error("❌ %s: %s (will not retry)", status.value, event.reason)
        await self._set(status, last_error=event.reason)

    async def _set(self, status: Status, **fields: Any) -> None:
        changed = status != self.status
        self.status = status
        if changed:
            self.since = time.time()
        if "last_error" in fields:  # a new error (or none) replaces the old detail too
            self.last_error = fields["last_error"]
            self.detail = fields.get("detail")
        await self.sup.tenants.update_tenant(
            self.tenant_id,
            status=status.value,
            since=self.since,
            last_error=self.last_error,
            detail=self.detail,
            phone=self.phone,
            push_name=self.push_name,
            jid=self.jid,
            reconnect_attempts=self.attempts,
            next_retry_at=self.next_retry_at,
        )
        self.sup.publish_status(self)

    def known_jid(self, phone: str, max_age_s: float) -> tuple[bool, str | None] | None:
        """WhatsApp's answer for ``phone`` if it is younger than ``max_age_s``."""
        known = self.jids.get(phone)
        if known is None or known[2] <= time.time() - max_age_s:
            return None
        return known[0], known[1]

    def remember_jid(self, phone: str, answer: tuple[bool, str | None]) -> None:
        if len(self.jids) >= JIDS_KEPT:  # the oldest answer goes first
            del self.jids[next(iter(self.jids))]
        self.jids[phone] = (answer[0], answer[1], time.time())

    def snapshot(self) -> dict[str, Any]:
        """The tenant's status as the API shows it."""
        return {
            "tenant_id": self.tenant_id,
            "engine": self.engine.name,
            "status": self.status.value,
            "connected": self.status == Status.CONNECTED,
            "phone": self.phone,
            "push_name": self.push_name,
            "jid": self.jid,
            "since": self.since,
            "reason": reason(self.status, self.phone, self.jid),
            "last_error": self.last_error,
            "detail": self.detail,
            "reconnect_attempts": self.attempts,
            "next_retry_at": self.next_retry_at,
        }


class Supervisor:
    """Owns every tenant runner of this node."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine | Engines,
        tasks: TaskGroup,
        metrics: Metrics | None = None,
        tenants: TenantStore | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.store = store
        self.tenants = tenants or store  # where tenant state is written (the directory)
        self.engines = engine if isinstance(engine, Engines) else Engines(engine, settings, store)
        self.tasks = tasks
        self.backoff = Backoff(settings.reconnect_base_s, settings.reconnect_cap_s)
        self.start_gate = asyncio.Semaphore(settings.start_concurrency)
        self.runners: dict[str, TenantRunner] = {}
        self.handlers: list[EventHandler] = []
        self.status_listeners: list[Callable[[TenantRunner], None]] = []
        self.log = logging.getLogger("zapmux.supervisor")

    async def resume(self, record: TenantRecord) -> TenantRunner:
        """Bring a tenant back to what it was: paired and wanted running → connect.

        Called when this node takes the tenant (at start, or from a dead node): a
        message its last runner left half-sent may or may not have gone out, so it
        ends ``failed`` saying so, never sent twice.
        """
        if record.id not in self.runners:
            await self.store.fail_interrupted_sends(record.id)
        runner = self.runners.get(record.id) or await self._runner_for(record)
        self.runners[record.id] = runner
        if Status(record.status) in PERMANENT or record.wanted != "running":
            return runner
        if await runner.engine.is_paired(record.id):
            self.tasks.spawn(f"start-{record.id}", runner.start())
        elif runner.status != Status.QR_TIMEOUT:
            await runner._set(Status.STOPPED)  # unpaired: pairing starts when asked
        return runner

    async def stop(self) -> None:
        await asyncio.gather(
            *(r.stop(r.status) for r in self.runners.values()), return_exceptions=True
        )

    async def release(self, tenant_id: str) -> None:
        """Stop running a tenant here without recording anything: another node has it."""
        runner = self.runners.pop(tenant_id, None)
        if runner is not None:
            async with runner.lock:
                runner.released = True  # a start still on its way finds it so
                await runner._close()

    def runner(self, tenant_id: str) -> TenantRunner:
        runner = self.runners.get(tenant_id)
        if runner is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        return runner

    async def add(self, record: TenantRecord) -> TenantRunner:
        runner = await self._runner_for(record)
        self.runners[record.id] = runner
        return runner

    async def _runner_for(self, record: TenantRecord) -> TenantRunner:
        return TenantRunner(self, record, await self.engines.get(record.engine))

    async def set_wanted(self, tenant_id: str, wanted: str) -> None:
        await self.tenants.update_tenant(tenant_id, wanted=wanted)

    async def remove(self, tenant_id: str) -> None:
        runner = self.runner(tenant_id)
        await runner.logout()
        runner.released = True
        self.runners.pop(tenant_id, None)

    async def clear_all(self, purge: bool) -> int:
        """Close every connection, forget every retry counter, start every tenant again."""
        runners = list(self.runners.values())
        for runner in runners:
            await runner.stop()
            if purge:
                await runner.engine.wipe(runner.tenant_id)
            await self.set_wanted(runner.tenant_id, "running")
        for runner in runners:
            self.tasks.spawn(f"start-{runner.tenant_id}", runner.start())
        return len(runners)

    async def on_engine_event(self, tenant_id: str, event: Event) -> None:
        for handler in self.handlers:
            await handler(tenant_id, event)

    def publish_status(self, runner: TenantRunner) -> None:
        for listener in self.status_listeners:
            listener(runner)

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for runner in self.runners.values():
            counts[runner.status.value] += 1
        return counts
