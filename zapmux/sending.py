"""Sending: the durable per-tenant queue, pacing, idempotency and JID resolution.

A send goes out at once (200 ``sent``) when the tenant is connected, nothing waits
before it and its pace allows; otherwise it waits in the tenant's queue (202
``queued``) — the queue is the message log's ``queued`` rows, so it survives restarts
and any node can add to it. A tenant in a permanent end, stopped, or never paired
refuses sends (409), since nothing would ever send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from zapmux.config import Settings
from zapmux.engine import OutgoingMessage
from zapmux.errors import (
    Conflict,
    NotOnWhatsApp,
    RateLimited,
    TenantNotConnected,
    ZapmuxError,
)
from zapmux.events import Connected, Event, Media
from zapmux.inbound import Dispatcher
from zapmux.states import WILL_CONNECT, Status
from zapmux.store.base import Store
from zapmux.store.records import IdempotentAnswer, MessageRecord
from zapmux.supervisor import Supervisor, TenantRunner
from zapmux.tasks import TaskGroup

IDEMPOTENCY_TTL_S = 24 * 3600.0


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

    def fingerprint(self) -> str:
        raw = json.dumps(
            [
                self.phone,
                self.text,
                self.reply_to,
                self.media and hashlib.sha256(self.media.data).hexdigest(),
            ]
        )
        return hashlib.sha256(raw.encode()).hexdigest()

    def message_type(self) -> str:
        kinds = {
            "image": "imagem",
            "audio": "audio",
            "video": "video",
            "document": "documento",
            "sticker": "figurinha",
        }
        return kinds[self.media.kind] if self.media else "texto"


def new_message_id() -> str:
    return "ZM" + secrets.token_hex(10).upper()


class Sender:
    """Accepts sends, keeps each tenant's queue moving while it is connected."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        supervisor: Supervisor,
        dispatcher: Dispatcher,
        tasks: TaskGroup,
    ) -> None:
        self.settings = settings
        self.store = store
        self.supervisor = supervisor
        self.dispatcher = dispatcher
        self.tasks = tasks
        self.buckets: dict[str, TokenBucket] = {}
        self.wakeups: dict[str, asyncio.Event] = {}
        self.drains: dict[str, asyncio.Task[None]] = {}
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.sent = 0
        supervisor.handlers.append(self.on_event)

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
            return await self._submit(runner, request)
        lock = self.locks.setdefault((tenant_id, idempotency_key), asyncio.Lock())
        async with lock:
            seen = await self.store.get_idempotent(tenant_id, idempotency_key, IDEMPOTENCY_TTL_S)
            if seen is not None:
                if seen.fingerprint != request.fingerprint():
                    raise Conflict(
                        "this Idempotency-Key was used for a different message",
                        code="idempotency_key_reused",
                    )
                return seen.status_code, json.loads(seen.response)
            status, body = await self._submit(runner, request)
            await self.store.put_idempotent(
                IdempotentAnswer(
                    tenant_id,
                    idempotency_key,
                    request.fingerprint(),
                    status,
                    json.dumps(body),
                    time.time(),
                )
            )
        self.locks.pop((tenant_id, idempotency_key), None)
        return status, body

    async def _submit(
        self, runner: TenantRunner, request: SendRequest
    ) -> tuple[int, dict[str, Any]]:
        if runner.status not in WILL_CONNECT:
            raise TenantNotConnected(
                f"tenant {runner.tenant_id} is {runner.status.value}; it will not send until "
                "it is paired and started",
                status=runner.status.value,
            )
        queued = await self.store.count_queued(runner.tenant_id)
        if queued >= self.settings.send_queue_max:
            raise RateLimited(
                f"the send queue of {runner.tenant_id} is full ({queued})",
                retry_after=max(1.0, self.bucket(runner.tenant_id).wait_s()),
            )
        if (
            runner.status == Status.CONNECTED
            and queued == 0
            and self.bucket(runner.tenant_id).take()
        ):
            with contextlib.suppress(TenantNotConnected):
                return 200, await self._send_now(runner, request)
        record = await self._queue(runner.tenant_id, request)
        return 202, self._answer(record, "queued")

    async def _send_now(self, runner: TenantRunner, request: SendRequest) -> dict[str, Any]:
        jid = await self.resolve(runner, request.phone)
        record = await self.store.add_message(
            self._record(runner.tenant_id, request, "sending", jid)
        )
        await self._deliver(runner, record, request)
        return self._answer(record, "sent")

    async def _queue(self, tenant_id: str, request: SendRequest) -> MessageRecord:
        record = self._record(tenant_id, request, "queued", None)
        record.payload = json.dumps(_payload(request))
        record = await self.store.add_message(record)
        self._wake(tenant_id)
        await self.store.notify("send_queue")
        return record

    def _record(
        self, tenant_id: str, request: SendRequest, status: str, jid: str | None
    ) -> MessageRecord:
        media = request.media
        return MessageRecord(
            tenant_id=tenant_id,
            message_id=new_message_id(),
            direction="out",
            chat=jid or f"{request.phone}@s.whatsapp.net",
            phone=request.phone,
            message_type=request.message_type(),
            status=status,
            timestamp=time.time(),
            text=(media.caption if media else request.text),
            from_me=True,
            reply_to=request.reply_to,
            media_mimetype=media.mimetype if media else None,
            media_filename=media.filename if media else None,
        )

    def _answer(self, record: MessageRecord, status: str) -> dict[str, Any]:
        return {
            "success": True,
            "message_id": record.message_id,
            "status": status,
            "tenant_id": record.tenant_id,
            "phone": record.phone,
            "jid": record.chat if status == "sent" else None,
        }

    async def resolve(self, runner: TenantRunner, phone: str) -> str:
        """The JID WhatsApp reports for ``phone`` (cached), or NotOnWhatsApp."""
        cached = await self.store.get_jid(runner.tenant_id, phone, self.settings.jid_cache_ttl_s)
        if cached is None:
            if runner.session is None:
                raise TenantNotConnected("the tenant is not connected")
            info = (await runner.session.check([phone]))[0]
            cached = (info.exists, info.jid)
            await self.store.put_jid(runner.tenant_id, phone, info.exists, info.jid)
        exists, jid = cached
        if not exists or not jid:
            raise NotOnWhatsApp(f"{phone} is not on WhatsApp; nothing was sent", phone=phone)
        return jid

    async def _deliver(
        self, runner: TenantRunner, record: MessageRecord, request: SendRequest
    ) -> None:
        """Hand one logged message to the engine and record the outcome."""
        if runner.session is None:
            await self.store.update_message(record.tenant_id, record.message_id, status="queued")
            raise TenantNotConnected("the tenant is not connected")
        message = OutgoingMessage(
            to=record.chat,
            text=request.text,
            media=request.media,
            reply_to=request.reply_to,
            message_id=record.message_id,
        )
        try:
            result = await runner.session.send(message)
        except TenantNotConnected:
            await self.store.update_message(record.tenant_id, record.message_id, status="queued")
            raise
        except ZapmuxError as exc:
            await self.store.update_message(
                record.tenant_id, record.message_id, status="failed", error=exc.message
            )
            raise
        await self.store.update_message(
            record.tenant_id, record.message_id, status="sent", wa_id=result.message_id
        )
        record.status, record.wa_id = "sent", result.message_id
        self.sent += 1
        runner.log.info("✅ message sent to %s", record.phone)
        await self.dispatcher.emit(
            record.tenant_id, "message.sent", record.public(), chat=record.chat
        )

    # --- the queue --------------------------------------------------------------------
    async def on_event(self, tenant_id: str, event: Event) -> None:
        if isinstance(event, Connected):
            self.ensure_drain(tenant_id)

    def ensure_drain(self, tenant_id: str) -> None:
        task = self.drains.get(tenant_id)
        if task is None or task.done():
            self.drains[tenant_id] = self.tasks.spawn(
                f"send-queue-{tenant_id}", self._drain(tenant_id)
            )
        self._wake(tenant_id)

    def _wake(self, tenant_id: str) -> None:
        self.wakeups.setdefault(tenant_id, asyncio.Event()).set()

    async def _drain(self, tenant_id: str) -> None:
        """Send the tenant's queued messages in order, at its pace, while it is connected."""
        wakeup = self.wakeups.setdefault(tenant_id, asyncio.Event())
        while (
            runner := self.supervisor.runners.get(tenant_id)
        ) and runner.status == Status.CONNECTED:
            wakeup.clear()
            record = await self.store.next_queued(tenant_id)
            if record is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), 1.0)
                continue
            await self.bucket(tenant_id).acquire()
            if not await self._send_queued(runner, record):
                return

    async def _send_queued(self, runner: TenantRunner, record: MessageRecord) -> bool:
        """False when the tenant went offline (the message stays queued)."""
        request = _request(record)
        try:
            record.chat = await self.resolve(runner, record.phone or "")
            await self.store.update_message(
                record.tenant_id, record.message_id, status="sending", chat=record.chat
            )
            await self._deliver(runner, record, request)
        except TenantNotConnected:
            await self.store.update_message(record.tenant_id, record.message_id, status="queued")
            return False
        except ZapmuxError as exc:
            await self.store.update_message(
                record.tenant_id, record.message_id, status="failed", error=exc.message
            )
            runner.log.error("❌ queued message %s failed: %s", record.message_id, exc.message)
        return True

    async def fail_interrupted(self) -> None:
        """At start: a message left ``sending`` by a crash may or may not have gone out."""
        await self.store.fail_interrupted_sends()


def _payload(request: SendRequest) -> dict[str, Any]:
    data = asdict(request)
    if request.media is not None:
        import base64

        data["media"]["data"] = base64.b64encode(request.media.data).decode()
    return data


def _request(record: MessageRecord) -> SendRequest:
    data = json.loads(record.payload or "{}")
    media = data.get("media")
    if media:
        import base64

        media = Media(**{**media, "data": base64.b64decode(media["data"])})
    return SendRequest(
        phone=data.get("phone") or record.phone or "",
        text=data.get("text"),
        media=media,
        reply_to=data.get("reply_to"),
    )
