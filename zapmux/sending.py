"""Sending: the durable per-tenant queue, pacing, idempotency and JID resolution.

A send goes out at once (200 ``sent``) when the tenant is connected, nothing waits
before it and its pace allows; otherwise it waits in the tenant's queue (202
``queued``) — the queue is the message log's ``queued`` rows, so it survives restarts
and any node can add to it. A tenant in a permanent end, stopped, or never paired
refuses sends (409), since nothing would ever send them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from zapmux.config import Settings
from zapmux.engines.base import NotConnected, NumberInfo, OutgoingMessage, SendResult
from zapmux.errors import (
    Conflict,
    EngineError,
    NotOnWhatsApp,
    OptedOut,
    RateLimited,
    SendLater,
    TenantNotConnected,
    ZapmuxError,
)
from zapmux.events import Connected, Event, Media
from zapmux.ids import random_hex
from zapmux.locks import KeyedLocks
from zapmux.optouts import OptOuts
from zapmux.phone import JID
from zapmux.scheduler import check_send_at
from zapmux.states import WILL_CONNECT, MessageStatus, Status
from zapmux.store.base import Store
from zapmux.store.records import SEND_INTERRUPTED, IdempotentAnswer, MessageRecord
from zapmux.supervisor import Supervisor, TenantRunner
from zapmux.tasks import TaskGroup
from zapmux.webhooks import Webhooks

IDEMPOTENCY_TTL_S = 24 * 3600.0
PROVISIONAL = 0  # the status code of a key remembered before its answer is known


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; rate 0 means no limit."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a token (the pace), then take it."""
        while not self.take():  # noqa: ASYNC110 - waiting on time, not on a flag
            await asyncio.sleep(self.wait_s())

    def wait_s(self) -> float:
        if self.rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, (1 - self.tokens) / self.rate)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One message a client asked to send."""

    phone: str
    text: str | None = None
    media: Media | None = None
    reply_to: str | None = None
    options: tuple[str, ...] | None = None  # a question with these answers (a poll)
    send_at: float | None = None  # Unix seconds: a scheduled send
    template: dict[str, Any] | None = None  # Cloud API only: name, language, components

    def fingerprint(self) -> str:
        """What makes two requests the same message (for Idempotency-Key reuse)."""
        media = self.media
        parts: list[Any] = [
            self.phone,
            self.text,
            self.reply_to,
            media
            and [
                media.kind,
                media.mimetype,
                media.filename,
                media.caption,
                media.ptt,
                hashlib.sha256(media.data).hexdigest(),
            ],
        ]
        if self.template is not None:
            parts.append(self.template)
        if self.options is not None or self.send_at is not None:
            parts += [self.options and list(self.options), self.send_at]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def message_type(self) -> str:
        if self.options:
            return "enquete"
        kinds = {
            "image": "imagem",
            "audio": "audio",
            "video": "video",
            "document": "documento",
            "sticker": "figurinha",
        }
        if self.template is not None:
            return "template"
        return kinds[self.media.kind] if self.media else "texto"


def new_message_id() -> str:
    return "ZM" + random_hex(20)


class Sender:
    """Accepts sends, keeps each tenant's queue moving while it is connected.

    Order: every send of a tenant, direct or from its queue, goes to the engine while
    holding that tenant's *lane*; a send goes direct only when nothing is queued, so a
    later request can never overtake a message that is waiting or on its way.
    A tenant's queue runs from its ``Connected`` (:meth:`on_event`) and looks again at
    every change of its state (:meth:`wake`), as gateway.py wires it.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        supervisor: Supervisor,
        webhooks: Webhooks,
        tasks: TaskGroup,
        optouts: OptOuts | None = None,
        on_scheduled: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.supervisor = supervisor
        self.webhooks = webhooks
        self.tasks = tasks
        self.optouts = optouts or OptOuts(store)
        self.on_scheduled = on_scheduled  # the scheduler looks at the earliest due time
        self.buckets: dict[str, TokenBucket] = {}
        self.wakeups: dict[str, asyncio.Event] = {}
        self.drains: dict[str, asyncio.Task[None]] = {}
        # a tenant the engine asked to wait (throttled): nothing goes out before then
        self.paused_until: dict[str, float] = {}
        self.lanes = KeyedLocks()
        self.keys = KeyedLocks()

    def bucket(self, tenant_id: str) -> TokenBucket:
        if tenant_id not in self.buckets:
            self.buckets[tenant_id] = TokenBucket(
                self.settings.send_rate_per_minute / 60, self.settings.send_burst
            )
        return self.buckets[tenant_id]

    # --- accepting a send -------------------------------------------------------------
    async def submit(
        self, tenant_id: str, request: SendRequest, idempotency_key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for a send; the same answer again for a repeated key."""
        runner = self.supervisor.runner(tenant_id)
        if not idempotency_key:
            return await self._submit(runner, request, new_message_id())
        key = idempotency_key
        async with self.keys.hold((tenant_id, key)):
            seen = await self.store.get_idempotent(tenant_id, key, IDEMPOTENCY_TTL_S)
            if seen is not None:
                if seen.fingerprint != request.fingerprint():
                    raise Conflict(
                        "this Idempotency-Key was used for a different message",
                        code="idempotency_key_reused",
                    )
                if seen.status_code != PROVISIONAL:
                    return seen.status_code, json.loads(seen.response)
                logged = await self._answer_from_log(tenant_id, json.loads(seen.response))
                if logged is not None:
                    return logged
            # Remembered with the message, in its transaction: if the process dies
            # from then on, a retry with this key finds the message instead of sending
            # it again (and a send refused before that leaves no trace of the key).
            message_id = new_message_id()
            pointer = json.dumps({"message_id": message_id})
            provisional = IdempotentAnswer(
                tenant_id, key, request.fingerprint(), PROVISIONAL, pointer, time.time()
            )
            try:
                status, body = await self._submit(runner, request, message_id, provisional)
            except ZapmuxError:
                await self.store.forget_idempotent(tenant_id, key)  # refused: nothing sent
                raise
            if provisional.status_code == PROVISIONAL:  # not written with the outcome
                await self._remember(runner, key, request, status, body)
        return status, body

    async def _remember(
        self,
        runner: TenantRunner,
        key: str,
        request: SendRequest,
        status: int,
        body: dict[str, Any],
    ) -> None:
        answer = IdempotentAnswer(
            runner.tenant_id, key, request.fingerprint(), status, json.dumps(body), time.time()
        )
        await self.store.put_idempotent(answer, runner.incarnation)

    async def _answer_from_log(
        self, tenant_id: str, provisional: dict[str, Any]
    ) -> tuple[int, dict[str, Any]] | None:
        """After a crash mid-send: the message's own state, or None if it never got in."""
        record = await self.store.get_message(tenant_id, provisional["message_id"])
        if record is None:
            return None
        if record.status == MessageStatus.FAILED and record.error == SEND_INTERRUPTED:
            return 409, _interrupted(record)
        status = record.public()["status"]
        waiting = status in (MessageStatus.QUEUED, MessageStatus.SCHEDULED)
        body = self._answer(record, status, None if waiting else record.chat)
        if record.error:
            body["error"] = record.error
        return (202 if waiting else 200), body

    async def _submit(
        self,
        runner: TenantRunner,
        request: SendRequest,
        message_id: str,
        key: IdempotentAnswer | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send now, queue or schedule; ``key``: the Idempotency-Key to remember with the
        message."""
        await self.optouts.refuse_if_opted_out(runner.tenant_id, request.phone, runner.incarnation)
        if request.send_at is not None:
            return await self._schedule(runner, message_id, request, key)
        await self._refuse_if_hopeless(runner)
        tenant_id = runner.tenant_id
        async with self.lanes.hold(tenant_id):
            queued = await self._queued(runner)
            if queued >= self.settings.send_queue_max:
                raise RateLimited(
                    f"the send queue of {tenant_id} is full ({queued} waiting)",
                    retry_after=max(1.0, self.bucket(tenant_id).wait_s()),
                )
            jid = await self._resolve_early(runner, request.phone)
            direct = (
                runner.status == Status.CONNECTED
                and jid is not None
                and queued == 0
                and self._pause_left(tenant_id) <= 0
            )
            if not (direct and self.bucket(tenant_id).take()):
                return 202, await self._queue(runner, message_id, request, jid, key)
            record = await self.store.add_message(
                self._record(tenant_id, message_id, request, MessageStatus.SENDING, jid),
                runner.incarnation,
                key,
            )
            result = await self._hand_over(runner, record, request)
        if result is None:
            return 202, self._answer(record, MessageStatus.QUEUED, jid)
        # Outside the lane: the order is fixed once the engine has it.
        answer = self._answer(record, MessageStatus.SENT, jid)
        await self._sent(runner, record, result, _settled(key, 200, answer))
        return 200, answer

    async def _queued(self, runner: TenantRunner) -> int:
        """How many of the tenant's messages wait (kept by its runner once counted)."""
        if runner.queued is None:
            runner.queued = await self.store.count_queued(runner.tenant_id)
        return runner.queued

    async def _refuse_if_hopeless(self, runner: TenantRunner) -> None:
        """409 when nothing would ever send it: a permanent end, stopped, never paired."""
        status = runner.status
        if status == Status.CONNECTED or (
            status in WILL_CONNECT and await runner.engine.is_paired(runner.tenant_id)
        ):
            return
        raise TenantNotConnected(
            f"tenant {runner.tenant_id} is {status.value}; it will not send until it is "
            "paired and started",
            status=status.value,
        )

    async def _resolve_early(self, runner: TenantRunner, phone: str) -> str | None:
        """The JID when it can be known now (online, or cached); NotOnWhatsApp at once.

        Resolving before queueing means a paced send to a number that is not on
        WhatsApp is refused (422) instead of accepted and failed later.
        """
        if runner.status == Status.CONNECTED:
            with contextlib.suppress(NotConnected):
                return await self.resolve(runner, phone)
        cached = await self._cached_jid(runner, phone)
        if cached is not None and not cached[0]:
            raise NotOnWhatsApp(f"{phone} is not on WhatsApp; nothing was sent", phone=phone)
        return None  # a cached JID is checked again when the queue sends it

    async def _schedule(
        self,
        runner: TenantRunner,
        message_id: str,
        request: SendRequest,
        key: IdempotentAnswer | None,
    ) -> tuple[int, dict[str, Any]]:
        """Keep it for its time (scheduler.py); the tenant's state then decides."""
        check_send_at(request.send_at or 0.0, time.time())
        record = self._record(runner.tenant_id, message_id, request, MessageStatus.SCHEDULED, None)
        record.payload = json.dumps(_payload(request))
        answer = {**self._answer(record, MessageStatus.SCHEDULED, None), "send_at": request.send_at}
        await self.store.add_message(record, runner.incarnation, _settled(key, 202, answer))
        self.on_scheduled()
        return 202, answer

    async def _queue(
        self,
        runner: TenantRunner,
        message_id: str,
        request: SendRequest,
        jid: str | None,
        key: IdempotentAnswer | None,
    ) -> dict[str, Any]:
        """Log it ``queued`` (its key's final answer with it); that answer."""
        record = self._record(runner.tenant_id, message_id, request, MessageStatus.QUEUED, jid)
        record.payload = json.dumps(_payload(request))
        answer = self._answer(record, MessageStatus.QUEUED, jid)
        await self.store.add_message(record, runner.incarnation, _settled(key, 202, answer))
        runner.queued = (runner.queued or 0) + 1
        self.wake(runner.tenant_id)
        return answer

    def _record(
        self, tenant_id: str, message_id: str, request: SendRequest, status: str, jid: str | None
    ) -> MessageRecord:
        media = request.media
        return MessageRecord(
            tenant_id=tenant_id,
            message_id=message_id,
            wa_id=message_id,  # engines that send with our id: receipts match at once
            direction="out",
            chat=jid or str(JID(request.phone)),
            phone=request.phone,
            message_type=request.message_type(),
            status=status,
            timestamp=time.time(),
            text=(media.caption if media else request.text),
            from_me=True,
            reply_to=request.reply_to,
            media_mimetype=media.mimetype if media else None,
            media_filename=media.filename if media else None,
            send_at=request.send_at,
            poll=json.dumps({"options": list(request.options)}) if request.options else None,
        )

    def _answer(self, record: MessageRecord, status: str, jid: str | None) -> dict[str, Any]:
        return {
            "success": True,
            "message_id": record.message_id,
            "status": status,
            "tenant_id": record.tenant_id,
            "phone": record.phone,
            "jid": jid,  # None while queued unresolved: the queue asks WhatsApp later
        }

    async def resolve(self, runner: TenantRunner, phone: str) -> str:
        """The JID WhatsApp reports for ``phone`` (cached), or NotOnWhatsApp."""
        cached = await self._cached_jid(runner, phone)
        if cached is None:
            session = runner.session
            if session is None:
                raise NotConnected("the tenant is not connected")
            info = (await session.check([phone]))[0]
            cached = (info.exists, info.jid)
            await self.remember_jid(runner, NumberInfo(phone, info.exists, info.jid))
        exists, jid = cached
        if not exists or not jid:
            raise NotOnWhatsApp(f"{phone} is not on WhatsApp; nothing was sent", phone=phone)
        return jid

    async def remember_jid(self, runner: TenantRunner, info: NumberInfo) -> None:
        """WhatsApp's fresh answer for a number: in the runner's memory and the store."""
        await self.store.put_jid(
            runner.tenant_id, info.phone, info.exists, info.jid, runner.incarnation
        )
        runner.remember_jid(info.phone, (info.exists, info.jid))

    async def _cached_jid(self, runner: TenantRunner, phone: str) -> tuple[bool, str | None] | None:
        """WhatsApp's last answer for ``phone`` if fresh: from the runner's memory, else
        from the store (another runner of this tenant may have asked)."""
        ttl = self.settings.jid_cache_ttl_s
        cached = runner.known_jid(phone, ttl)
        if cached is None:
            cached = await self.store.get_jid(runner.tenant_id, phone, ttl)
            if cached is not None:
                runner.remember_jid(phone, cached)
        return cached

    async def _hand_over(
        self, runner: TenantRunner, record: MessageRecord, request: SendRequest
    ) -> SendResult | None:
        """Hand one logged message to the engine (inside the tenant's lane).

        None when the tenant went offline: the message waits in the queue again.
        Other failures mark it ``failed`` and raise.
        """
        message = OutgoingMessage(
            to=record.chat,
            text=request.text,
            media=request.media,
            reply_to=request.reply_to,
            message_id=record.message_id,
            options=request.options,
            template=request.template,
        )
        try:
            session = runner.session
            if session is None:
                raise NotConnected("the tenant is not connected")
            return await session.send(message)
        except NotConnected:
            await self._requeue(runner, record, request)
            return None
        except SendLater as exc:
            await self._requeue(runner, record, request)
            self.paused_until[record.tenant_id] = time.monotonic() + exc.retry_after
            runner.log.warning("🔄 %s; retrying in %.1fs", exc.message, exc.retry_after)
            return None
        except ZapmuxError as exc:
            await self._fail(runner, record, exc.message, exc.code)
            raise
        except Exception as exc:
            await self._fail(runner, record, f"the engine failed: {exc!r}", "engine_error")
            raise EngineError(f"the engine failed to send: {type(exc).__name__}") from exc

    async def _sent(
        self,
        runner: TenantRunner,
        record: MessageRecord,
        result: SendResult,
        key: IdempotentAnswer | None = None,
    ) -> None:
        """Record that the engine took it (with ``key``, its Idempotency-Key's final
        answer), and its ``message.sent`` event."""
        await self.store.mark_sent(
            record.tenant_id, record.message_id, result.message_id, key, runner.incarnation
        )
        if result.poll_secret and record.options:  # kept with the question (polls.py)
            record.poll = json.dumps({"options": record.options, "secret": result.poll_secret})
            await self.store.update_message(record.tenant_id, record.message_id, poll=record.poll)
        record.status, record.wa_id = MessageStatus.SENT, result.message_id
        self.supervisor.metrics.inc("messages_sent_total")
        # from acceptance, or for a scheduled send from its time
        since = max(record.created_at, record.send_at or 0.0)
        self.supervisor.metrics.observe("send_latency_seconds", time.time() - since)
        runner.log.info("✅ message sent to %s", record.phone)
        await self.webhooks.emit(
            record.tenant_id, "message.sent", record.public(), chat=record.chat
        )

    async def _requeue(
        self, runner: TenantRunner, record: MessageRecord, request: SendRequest
    ) -> None:
        """Back to the queue, with what it needs to be sent later."""
        await self.store.update_message(
            record.tenant_id,
            record.message_id,
            status=MessageStatus.QUEUED,
            payload=json.dumps(_payload(request)),
        )
        record.status = MessageStatus.QUEUED
        runner.queued = (runner.queued or 0) + 1

    async def _fail(
        self, runner: TenantRunner, record: MessageRecord, error: str, code: str | None = None
    ) -> None:
        """Mark it failed with ``error`` for a person and ``code`` for a program."""
        # the payload (possibly megabytes of media) is not needed once it cannot go out
        await self.store.update_message(
            record.tenant_id, record.message_id, status=MessageStatus.FAILED, error=error,
            error_code=code, payload=None,
        )  # fmt: skip
        record.status, record.error, record.error_code = MessageStatus.FAILED, error, code
        self.supervisor.metrics.inc("messages_failed_total")
        runner.log.error("❌ message %s to %s failed: %s", record.message_id, record.phone, error)

    # --- the queue --------------------------------------------------------------------
    async def on_event(self, tenant_id: str, event: Event) -> None:
        if isinstance(event, Connected):
            self.ensure_drain(tenant_id)

    def ensure_drain(self, tenant_id: str) -> None:
        task = self.drains.get(tenant_id)
        if task is None or task.done():
            self.wakeups.setdefault(tenant_id, asyncio.Event())
            self.drains[tenant_id] = self.tasks.spawn(
                f"send-queue-{tenant_id}", self._drain(tenant_id)
            )
        self.wake(tenant_id)

    def joined_queue(self, tenant_id: str, count: int) -> None:
        """``count`` scheduled sends of this node's tenant joined its queue (written
        through by the scheduler): count them and wake the queue."""
        runner = self.supervisor.runners.get(tenant_id)
        if runner is not None and runner.queued is not None:
            runner.queued += count
        self.ensure_drain(tenant_id)

    async def cancel(self, tenant_id: str, message_id: str) -> bool:
        """Cancel a scheduled or queued message; False once it went out (or failed)."""
        was = await self.store.cancel_message(tenant_id, message_id)
        if was == MessageStatus.QUEUED:
            runner = self.supervisor.runners.get(tenant_id)
            if runner is not None:
                _left_queue(runner)
        return was is not None

    def _pause_left(self, tenant_id: str) -> float:
        return self.paused_until.get(tenant_id, 0.0) - time.monotonic()

    def wake(self, tenant_id: str) -> None:
        """Wake the tenant's queue (it ends there if the tenant is no longer connected)."""
        wakeup = self.wakeups.get(tenant_id)
        if wakeup is not None:
            wakeup.set()

    def _connected_runner(self, tenant_id: str) -> TenantRunner | None:
        runner = self.supervisor.runners.get(tenant_id)
        return runner if runner is not None and runner.status == Status.CONNECTED else None

    async def _drain(self, tenant_id: str) -> None:
        """Send the tenant's queued messages in order, at its pace, while it is connected.

        It only ever ends when it sees the tenant offline, never while waiting, so a
        ``Connected`` that arrives meanwhile finds it alive and wakes it.
        """
        wakeup = self.wakeups.setdefault(tenant_id, asyncio.Event())
        while (runner := self._connected_runner(tenant_id)) is not None:
            wakeup.clear()
            try:
                progressed = await self._drain_one(runner)
            except Exception:  # a store hiccup must not stop the queue for good
                runner.log.exception("❌ the send queue stumbled; trying again")
                await asyncio.sleep(1.0)
                continue
            if not progressed:
                await self._idle(tenant_id, wakeup)

    async def _idle(self, tenant_id: str, wakeup: asyncio.Event) -> None:
        """Until a new send, a connection or a change of state; or, when the engine
        asked the tenant to wait (throttled), until then."""
        pause = self._pause_left(tenant_id)
        if pause <= 0:
            await wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):  # (not wait_for: see Deliverer._sleep)
            async with asyncio.timeout(pause):
                await wakeup.wait()

    async def _drain_one(self, runner: TenantRunner) -> bool:
        """Send the oldest queued message; False when there was none or it must wait."""
        record = await self.store.next_queued(runner.tenant_id)
        if record is None:
            runner.queued = 0
            return False
        if (pause := self._pause_left(runner.tenant_id)) > 0:
            await asyncio.sleep(pause)
        await self.bucket(runner.tenant_id).acquire()
        async with self.lanes.hold(runner.tenant_id):
            sent = await self._send_queued(runner, record)
        if sent is None:
            return False
        if isinstance(sent, SendResult):
            await self._sent(runner, record, sent)
        return True

    async def _send_queued(
        self, runner: TenantRunner, record: MessageRecord
    ) -> SendResult | bool | None:
        """What the engine answered; True when it failed for good (the queue goes on),
        None when the tenant went offline (the message stays queued)."""
        request = _request(record)
        try:
            record.chat = await self.resolve(runner, record.phone or "")
        except NotConnected:
            return None
        except ZapmuxError as exc:  # not on WhatsApp: it never will go out
            _left_queue(runner)
            await self._fail(runner, record, exc.message, exc.code)
            return True
        try:
            await self.optouts.refuse_if_opted_out(
                record.tenant_id, record.phone or "", runner.incarnation
            )
        except OptedOut as exc:  # it opted out while this waited
            _left_queue(runner)
            await self._fail(runner, record, exc.message, exc.code)
            return True
        if not await self.store.claim_queued(record.tenant_id, record.message_id, record.chat):
            return True  # cancelled while it waited for the pace (it left the count then)
        _left_queue(runner)
        try:
            return await self._hand_over(runner, record, request)
        except ZapmuxError:
            return True  # marked failed and logged; the queue goes on


def _settled(
    key: IdempotentAnswer | None, status: int, answer: dict[str, Any]
) -> IdempotentAnswer | None:
    """``key`` given its final answer, to be written with the outcome (in its transaction)."""
    if key is not None:
        key.status_code, key.response = status, json.dumps(answer)
    return key


def _left_queue(runner: TenantRunner) -> None:
    if runner.queued:
        runner.queued -= 1


def _interrupted(record: MessageRecord) -> dict[str, Any]:
    """The answer for a message whose hand-over to WhatsApp a crash cut short: not a
    success, since nobody knows whether it went out (see docs/sending.md)."""
    return {
        "success": False,
        "error": {
            "code": "send_interrupted",
            "message": "zapmux was interrupted while handing this message to WhatsApp; it "
            "may or may not have gone out, and it will not be sent again. To send it "
            "(again), send it anew with a new Idempotency-Key.",
        },
        "message_id": record.message_id,
        "status": MessageStatus.FAILED,
        "tenant_id": record.tenant_id,
        "phone": record.phone,
    }


def _payload(request: SendRequest) -> dict[str, Any]:
    data = asdict(request)
    if request.media is not None:
        data["media"]["data"] = base64.b64encode(request.media.data).decode()
    return data


def _request(record: MessageRecord) -> SendRequest:
    data = json.loads(record.payload or "{}")
    media = data.get("media")
    if media:
        media = Media(**{**media, "data": base64.b64decode(media["data"])})
    return SendRequest(
        phone=data.get("phone") or record.phone or "",
        text=data.get("text"),
        media=media,
        reply_to=data.get("reply_to"),
        options=tuple(data["options"]) if data.get("options") else None,
        template=data.get("template"),
    )
