"""Per-tenant lifecycle: states, the commands a person gives, reconnects, the start throttle.

Each tenant has a :class:`TenantRunner` that owns its engine session and turns engine
events into state. When a connection ends, the :class:`~zapmux.reconnect.ReconnectPolicy`
decides what follows (transient drops reconnect with full-jitter backoff; permanent
ends and an unscanned QR stop and wait for a person) and the runner carries it out.
What a person asks (start, stop, restart, pair, logout, delete, clear all) comes in
as a command of the :class:`Supervisor`; nothing else changes a runner. Every change
of state is persisted (any node can answer for it) and published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zapmux.backoff import Backoff
from zapmux.config import Settings
from zapmux.engines import Engines
from zapmux.engines.base import Engine, Session
from zapmux.errors import Conflict, TenantNotFound
from zapmux.events import (
    Connected,
    Disconnected,
    Event,
    IncomingMessage,
    PairSuccess,
    PermanentDisconnect,
    QrCode,
    QrTimeout,
    Receipt,
    storable,
)
from zapmux.metrics import Metrics
from zapmux.reasons import reason
from zapmux.reconnect import (
    Connect,
    Decision,
    Ending,
    GiveUp,
    Reconnect,
    ReconnectPolicy,
    StayStopped,
)
from zapmux.states import NEEDS_RESTART, Status, Wanted
from zapmux.store.base import Store, TenantStore
from zapmux.store.records import TenantRecord
from zapmux.tasks import TaskGroup

HANDSHAKE_TIMEOUT_S = 30.0
#: How long a start asked for waits for its first outcome (a QR code to show, mostly).
START_WAIT_S = 3.0
JIDS_KEPT = 1000  # WhatsApp's answers a runner keeps in memory (the store keeps all)
#: Who hears of a tenant's messages, receipts and connections (wired in gateway.py).
EventHandler = Callable[[str, Event], Awaitable[None]]


async def _no_handler(tenant_id: str, event: Event) -> None:
    """Nobody listens (a supervisor on its own, as in engine tests)."""


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
        self.start_later()
        await self.wait_handshake(limit_s)

    def start_later(self) -> None:
        """Start in the background (a task of the supervisor's group)."""
        self.sup.tasks.spawn(f"start-{self.tenant_id}", self.start())

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
            await self.sup.on_event(self.tenant_id, event)
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
        elif isinstance(event, Disconnected | PermanentDisconnect | QrTimeout):
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
        await self.sup.on_event(self.tenant_id, event)

    async def _ended(self, event: Ending) -> None:
        """The connection ended: do what the reconnect policy decides."""
        connected_for = time.time() - self.connected_at if self.connected_at else None
        await self.act(self.sup.policy.decide(event, self.attempts, connected_for))

    async def act(self, decision: Decision) -> None:
        """Carry out a decision of the reconnect policy (``KeepAsIs``: nothing to do)."""
        if isinstance(decision, Connect):
            self.start_later()
        elif isinstance(decision, Reconnect):
            await self._reconnect_later(decision)
        elif isinstance(decision, GiveUp):
            await self._give_up(decision)
        elif isinstance(decision, StayStopped):
            await self._stay_stopped(decision)

    async def _reconnect_later(self, decision: Reconnect) -> None:
        await self._close(pause=True)
        self.connected_at = None
        self.attempts = decision.attempt
        self.sup.metrics.inc("reconnect_attempts_total")
        delay = decision.delay
        self.next_retry_at = time.time() + delay
        self.log.warning(
            "🔄 disconnected (%s); retry %d in %.1fs", decision.reason, self.attempts, delay
        )
        self._retry = self.sup.tasks.spawn(f"retry-{self.tenant_id}", self._retry_after(delay))
        await self._set(Status.RECONNECTING, last_error=decision.reason, detail=decision.detail)

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

    async def _give_up(self, decision: GiveUp) -> None:
        await self._close()
        if decision.wipe:
            await self.engine.wipe(self.tenant_id)
            self.phone = self.push_name = self.jid = None
        self.connected_at = None
        self.log.error("❌ %s: %s (will not retry)", decision.status.value, decision.reason)
        await self._set(decision.status, last_error=decision.reason)

    async def _stay_stopped(self, decision: StayStopped) -> None:
        await self._close()
        if decision.reason is None:
            await self._set(decision.status)
            return
        self.log.warning("❌ %s; waiting for a new request", decision.reason)
        await self._set(decision.status, last_error=decision.reason)

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
        self.sup.on_status(self)

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


@dataclass(frozen=True, slots=True)
class Pairing:
    """Where pairing by QR code stands: the tenant's state, and the code to scan while
    it waits for one (None in any other state)."""

    status: Status
    qr: QrCode | None = None


class Supervisor:
    """Owns every tenant runner of this node, and is the one place that changes them.

    The commands a person gives — :meth:`start`, :meth:`stop`, :meth:`restart`,
    :meth:`pair` (QR code), :meth:`pair_code`, :meth:`logout`, :meth:`delete`,
    :meth:`clear_all` — come through here, from the API (and the CLI, which calls it);
    reconnects are decided by its :class:`ReconnectPolicy`. Who hears of what happens
    is given at construction (gateway.py wires it): ``on_event`` gets the tenants'
    messages, receipts and connections, ``on_status`` every change of state,
    ``on_deleted`` each deleted tenant's id.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine | Engines,
        tasks: TaskGroup,
        metrics: Metrics | None = None,
        tenants: TenantStore | None = None,
        *,
        on_event: EventHandler = _no_handler,
        on_status: Callable[[TenantRunner], None] = lambda runner: None,
        on_deleted: Callable[[str], None] = lambda tenant_id: None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.store = store
        self.tenants = tenants or store  # where tenant state is written (the directory)
        self.engines = engine if isinstance(engine, Engines) else Engines(engine, settings, store)
        self.tasks = tasks
        self.policy = ReconnectPolicy(
            Backoff(settings.reconnect_base_s, settings.reconnect_cap_s), settings.stable_after_s
        )
        self.start_gate = asyncio.Semaphore(settings.start_concurrency)
        self.runners: dict[str, TenantRunner] = {}
        self.on_event = on_event
        self.on_status = on_status
        self.on_deleted = on_deleted
        self.log = logging.getLogger("zapmux.supervisor")

    # --- this node's tenants ----------------------------------------------------------
    async def resume(self, record: TenantRecord) -> TenantRunner:
        """Bring a tenant back to what it was (as the reconnect policy decides): paired
        and wanted running → connect.

        Called when this node takes the tenant (at start, or from a dead node): a
        message its last runner left half-sent may or may not have gone out, so it
        ends ``failed`` saying so, never sent twice.
        """
        if record.id not in self.runners:
            await self.store.fail_interrupted_sends(record.id)
        runner = self.runners.get(record.id) or await self._runner_for(record)
        self.runners[record.id] = runner
        paired = await runner.engine.is_paired(record.id)
        await runner.act(self.policy.decide_resume(Status(record.status), record.wanted, paired))
        return runner

    async def stop_all(self) -> None:
        """Close every session of this node (it is shutting down), keeping each state."""
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

    async def _want(self, tenant_id: str, wanted: Wanted) -> None:
        await self.tenants.update_tenant(tenant_id, wanted=wanted)

    async def _run(self, runner: TenantRunner) -> None:
        """Want the tenant running and start it; return at its first outcome (a QR code
        to show, connected, a failure) or after ``START_WAIT_S``."""
        await self._want(runner.tenant_id, Wanted.RUNNING)
        await runner.start_and_wait(START_WAIT_S)

    # --- commands ---------------------------------------------------------------------
    async def start(self, tenant_id: str) -> None:
        """Connect, pairing by QR code when unpaired, and keep it running.

        A permanent end is cleared first (its retry counter too): a person asked, so it
        may be tried again."""
        runner = self.runner(tenant_id)
        if runner.status in NEEDS_RESTART:
            await runner.stop()
        await self._run(runner)

    async def stop(self, tenant_id: str) -> None:
        """Disconnect and stay stopped (also across restarts of the server)."""
        await self._want(tenant_id, Wanted.STOPPED)
        await self.runner(tenant_id).stop()

    async def restart(self, tenant_id: str) -> None:
        """Close the connection and open it again (new credentials apply from here)."""
        runner = self.runner(tenant_id)
        await runner.stop()
        await self._run(runner)

    async def pair(self, tenant_id: str) -> Pairing:
        """The QR code to scan, starting pairing when nothing runs (or is about to).

        Raises ``Conflict`` for an engine without QR codes and for an end that only a
        start or a logout clears."""
        runner = self.runner(tenant_id)
        _refuse_pairing(runner)
        if runner.status == Status.CONNECTED:
            return Pairing(Status.CONNECTED)
        if runner.status in NEEDS_RESTART:
            raise Conflict(
                f"tenant is {runner.status.value}; restart or log it out before pairing",
                code="tenant_not_pairable",
                status=runner.status.value,
            )
        if runner.session is None and runner.status != Status.RECONNECTING:
            await self._run(runner)
        if runner.qr is None or runner.status != Status.AWAITING_QR:
            return Pairing(runner.status)
        return Pairing(Status.AWAITING_QR, runner.qr)

    async def pair_code(self, tenant_id: str, phone: str) -> str:
        """A code to type on the phone ``phone`` instead of scanning a QR code."""
        runner = self.runner(tenant_id)
        _refuse_pairing(runner)
        if runner.status == Status.CONNECTED:
            raise Conflict("tenant is already connected", code="already_paired")
        await self._want(tenant_id, Wanted.RUNNING)
        return await runner.pair_code(phone)

    async def logout(self, tenant_id: str) -> None:
        """Unlink the device from WhatsApp and wipe its session."""
        await self.runner(tenant_id).logout()

    async def delete(self, tenant_id: str) -> None:
        """Log the tenant out (unlinking the device), let its runner go, delete it."""
        runner = self.runner(tenant_id)
        await runner.logout()
        runner.released = True
        self.runners.pop(tenant_id, None)
        await self.tenants.delete_tenant(tenant_id)
        self.on_deleted(tenant_id)

    async def clear_all(self, purge: bool) -> int:
        """Close every connection, forget every retry counter, start every tenant again
        (with ``purge``, wiping every session first: all pair again)."""
        runners = list(self.runners.values())
        for runner in runners:
            await runner.stop()
            if purge:
                await runner.engine.wipe(runner.tenant_id)
            await self._want(runner.tenant_id, Wanted.RUNNING)
        for runner in runners:
            runner.start_later()
        return len(runners)

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for runner in self.runners.values():
            counts[runner.status.value] += 1
        return counts


def _refuse_pairing(runner: TenantRunner) -> None:
    """409 for QR and pairing codes on an engine that has none (the Cloud API)."""
    if not runner.engine.pairs:
        raise Conflict(
            f"tenant {runner.tenant_id} uses the {runner.engine.name} engine: it connects "
            "with its access token, there is no QR code or pairing code",
            code="pairing_not_supported",
            engine=runner.engine.name,
        )
