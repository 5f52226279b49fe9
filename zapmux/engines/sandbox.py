"""The sandbox: a simulated WhatsApp network inside zapmux, for trying the server and
testing the applications that call it, with no phone and no internet.

It behaves like whatsmeow where a client can see it: QR codes rotate (the first lives
3×N s, then N s each, 6 in all, then the pairing times out), a scan must present the
current code, sessions survive a restart, phones receive what tenants send and answer
with receipts, and faults can be injected. Its state lives in the zapmux store, so it
survives restarts and is shared by every node. What phones send to a tenant waits in
the store until the tenant's session has handed it to zapmux (written to the outbox):
only then is it acknowledged and removed, as a real server's offline queue would. A
message sent while the tenant's session is connected on the node the phone posts to
skips that queue: it is handed to the session at once, and the phone's answer comes
once zapmux has recorded it (should the session end first, it waits in the store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

from zapmux.config import Settings
from zapmux.engines.base import (
    Engine,
    EventSink,
    NotConnected,
    NumberInfo,
    OutgoingMessage,
    SendResult,
    Session,
)
from zapmux.errors import (
    Conflict,
    EngineError,
    InvalidInput,
    NotFound,
    QrExpired,
)
from zapmux.events import (
    Banned,
    Connected,
    Disconnected,
    Event,
    IncomingMessage,
    LoggedOut,
    Media,
    PairSuccess,
    PollVote,
    QrCode,
    QrTimeout,
    Receipt,
    Replaced,
)
from zapmux.ids import random_hex
from zapmux.phone import USER_SERVER, ninth_digit_variants, normalize_phone
from zapmux.polls import option_hash
from zapmux.states import MessageStatus
from zapmux.store.base import SANDBOX_CHANGES, SandboxStore
from zapmux.store.records import InboxMessage, SandboxQr, SandboxSession

QR_CODES = 6
PENDING_PAGE = 100  # pending items a session reads from the store at once
PAIR_CODE_TTL_S = 160.0
FAULTS = ("disconnect", "network_down", "network_up", "logout", "replace", "ban")
log = logging.getLogger("zapmux.sandbox")
#: One item for a session: its pending id in the store (None when it is only in memory,
#: see :meth:`SandboxSessionImpl.take`), the item (as JSON, as the store keeps it; only in
#: memory, as the dict that JSON would read back as), and who waits for it to be taken.
Item: TypeAlias = tuple[int | None, "str | dict[str, Any]", "asyncio.Future[bool] | None"]


def new_message_id() -> str:
    """An id shaped like WhatsApp's own (``3EB0`` + 18 hex digits)."""
    return "3EB0" + random_hex(18)


def _jid(phone: str) -> str:
    return f"{phone}@{USER_SERVER}"  # str(JID(phone)), without building one


def _receipt(message_id: str, phone: str, status: str) -> str:
    """The pending item of a phone's receipt for one message."""
    item = {
        "kind": "receipt",
        "message_ids": [message_id],
        "phone": phone,
        "status": status,
        "timestamp": time.time(),
    }
    return json.dumps(item)


class SandboxEngine(Engine):
    """The simulated network and its sessions. Shipped in the package; ``reset()`` for tests."""

    name = "sandbox"

    def __init__(self, settings: Settings, store: SandboxStore) -> None:
        self.settings = settings
        self.store = store
        self.sessions: dict[str, SandboxSessionImpl] = {}

    # --- the Engine seam -------------------------------------------------------------
    def open_session(self, tenant_id: str, sink: EventSink) -> Session:
        session = SandboxSessionImpl(self, tenant_id, sink)
        self.sessions[tenant_id] = session
        return session

    async def is_paired(self, tenant_id: str) -> bool:
        return await self.store.sandbox_session(tenant_id) is not None

    async def wipe(self, tenant_id: str) -> None:
        await self.store.sandbox_wipe(tenant_id)
        session = self.sessions.get(tenant_id)
        if session is not None:
            session.saved = None

    async def start(self) -> None:
        # What other nodes leave for (or pair) the sessions here wakes them (a store
        # no other node shares tells nothing: this node wakes its sessions itself).
        await self.store.subscribe(SANDBOX_CHANGES, self._changed_elsewhere)

    async def aclose(self) -> None:
        for session in list(self.sessions.values()):
            await session.disconnect()

    def _changed_elsewhere(self, tenant_id: str | None) -> None:
        """Another node left something for ``tenant_id``'s session or paired it (None:
        perhaps for any session here)."""
        if tenant_id is None:
            for session in self.sessions.values():
                session.nudge()
        else:
            self._wake(tenant_id)

    @property
    def qr_lifetimes(self) -> list[float]:
        n = self.settings.sandbox_qr_seconds
        return [3 * n] + [n] * (QR_CODES - 1)

    # --- what the sandbox routes do ------------------------------------------------------
    async def scan(self, code: str, phone: str) -> str:
        """A phone scans ``code``: pairs the tenant showing it. Returns the tenant id."""
        phone = normalize_phone(phone)
        qr = await self.store.sandbox_find_qr(code)
        if qr is None:
            raise NotFound("no tenant ever showed that QR code", code="qr_not_found")
        if not qr.current or qr.expires_at <= time.time():
            raise QrExpired()
        await self._pair(qr.tenant_id, phone)
        return qr.tenant_id

    async def pair(self, code: str, phone: str) -> str:
        """A phone enters a pairing code: pairs the tenant that asked for it."""
        phone = normalize_phone(phone)
        found = await self.store.sandbox_take_pair_code(code.strip().upper())
        if found is None:
            raise NotFound("no tenant asked for that pairing code", code="pair_code_not_found")
        tenant_id, expected_phone, expires_at = found
        if expires_at <= time.time():
            raise QrExpired(
                "that pairing code expired; ask for a new one", code="pair_code_expired"
            )
        if expected_phone != phone:
            raise Conflict(
                f"that pairing code was issued for {expected_phone}", code="phone_mismatch"
            )
        await self._pair(tenant_id, phone)
        return tenant_id

    async def _pair(self, tenant_id: str, phone: str) -> None:
        await self.store.sandbox_retire_qr(tenant_id)
        await self.store.sandbox_save_session(
            SandboxSession(
                tenant_id=tenant_id,
                phone=phone,
                push_name=f"Sandbox {phone[-4:]}",
                paired_at=time.time(),
            )
        )
        await self.store.sandbox_set_phone(phone, True)
        session = self.sessions.get(tenant_id)
        if session:
            session.paired.set()

    async def send_from_phone(
        self,
        phone: str,
        tenant_id: str,
        text: str,
        media: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> str:
        """A customer's phone sends a message to the tenant's number (with a new id
        unless ``message_id`` is given, as when a server hands one over again)."""
        phone = normalize_phone(phone)
        content = {"text": text, "media": media}
        return await self._push_message(phone, tenant_id, content, message_id)

    async def _push_message(
        self, phone: str, tenant_id: str, content: dict[str, Any], message_id: str | None = None
    ) -> str:
        session = self.sessions.get(tenant_id)
        paired = session is not None and session.saved is not None  # known here: no read
        if not paired and await self.store.sandbox_session(tenant_id) is None:
            raise Conflict(
                "that tenant has no WhatsApp number paired in the sandbox", code="tenant_not_paired"
            )
        message_id = message_id or new_message_id()
        item = {"kind": "message", "message_id": message_id, "phone": phone, **content}
        item["timestamp"] = time.time()
        session = self.sessions.get(tenant_id)
        if session is None or not await session.take(item):
            await self._push(tenant_id, json.dumps(item))
        return message_id

    async def vote(self, phone: str, tenant_id: str, poll_id: str, chosen: Sequence[str]) -> str:
        """A phone answers a question it received (a single-choice poll); ``[]`` takes
        its vote back. Like WhatsApp, the vote names answers by their text's SHA-256."""
        phone = normalize_phone(phone)
        poll = next(
            (
                m
                for m in await self.store.sandbox_inbox(phone)
                if m.message_id == poll_id and m.tenant_id == tenant_id and m.options
            ),
            None,
        )
        if poll is None:
            raise NotFound(
                f"{phone} received no question {poll_id!r} from tenant {tenant_id}",
                code="question_not_found",
            )
        options = json.loads(poll.options or "[]")
        if len(chosen) > 1 or any(c not in options for c in chosen):
            raise InvalidInput(f"choose one of the question's answers: {options}")
        vote = {"poll_id": poll_id, "selected_hashes": [option_hash(c) for c in chosen]}
        return await self._push_message(phone, tenant_id, {"text": "", "vote": vote})

    async def register_phone(self, phone: str, on_whatsapp: bool) -> str:
        phone = normalize_phone(phone)
        await self.store.sandbox_set_phone(phone, on_whatsapp)
        return phone

    async def phone_messages(self, phone: str) -> list[InboxMessage]:
        return await self.store.sandbox_inbox(normalize_phone(phone))

    async def read(self, phone: str) -> int:
        """The phone opens its chats: read receipts go back to each sender."""
        unread = await self.store.sandbox_mark_read(normalize_phone(phone))
        for m in unread:
            await self._push_receipt(m.tenant_id, m.message_id, m.phone, MessageStatus.READ)
        return len(unread)

    async def fault(self, tenant_id: str, kind: str) -> None:
        """Inject a fault into the tenant's connection (see ``FAULTS``)."""
        if kind not in FAULTS:
            raise ValueError(kind)
        if await self.store.sandbox_session(tenant_id) is None:
            raise Conflict(
                "that tenant has no WhatsApp number paired in the sandbox", code="tenant_not_paired"
            )
        if kind in {"network_down", "network_up"}:
            await self.store.sandbox_set_network(tenant_id, kind == "network_down")
            session = self.sessions.get(tenant_id)
            if session is not None and session.saved is not None:
                session.saved.network_down = kind == "network_down"
        if kind != "network_up":
            await self._push(tenant_id, json.dumps({"kind": "fault", "fault": kind}))

    async def reset(self) -> None:
        """Forget every session, phone and message of the simulated network."""
        for session in list(self.sessions.values()):
            await session.disconnect()
        self.sessions.clear()
        await self.store.sandbox_reset()

    async def lookup(self, phones: Sequence[str]) -> list[NumberInfo]:
        """Which numbers exist: a registered number as registered (ninth digit either
        way), an unregistered one exists as given."""
        wanted = {p: ninth_digit_variants(p) for p in phones}
        known = await self.store.sandbox_phones([v for vs in wanted.values() for v in vs])
        results = []
        for phone, variants in wanted.items():
            hit = next((v for v in variants if v in known), None)
            if hit is None:
                results.append(NumberInfo(phone, True, _jid(phone)))
            else:
                results.append(NumberInfo(phone, known[hit], _jid(hit) if known[hit] else None))
        return results

    async def _push_receipt(self, tenant_id: str, message_id: str, phone: str, status: str) -> None:
        await self._push(tenant_id, _receipt(message_id, phone, status))

    async def _push(self, tenant_id: str, event: str) -> None:
        """Leave ``event`` for the tenant's session (durably), and hand it over: here,
        or (when its session is not here) through the store's change feed."""
        here = tenant_id in self.sessions
        pending_id = await self.store.sandbox_push(tenant_id, event, tell_others=not here)
        self._wake(tenant_id, (pending_id, event, None))

    def _wake(self, tenant_id: str, item: Item | None = None) -> None:
        """Wake the tenant's session here, if any, with the ``item`` just left for it
        (without one it looks in the store: another node may have left something)."""
        session = self.sessions.get(tenant_id)
        if session is None:
            return
        if item is None:
            session.nudge()
        else:
            session.handed.append(item)
            session.wakeup.set()


class SandboxSessionImpl(Session):
    """One tenant's connection to the simulated network."""

    def __init__(self, network: SandboxEngine, tenant_id: str, sink: EventSink) -> None:
        self.network = network
        self.store = network.store
        self.tenant_id = tenant_id
        self.sink = sink
        self.connected = False
        self.awaiting_scan = False
        self.paired = asyncio.Event()
        self.wakeup = asyncio.Event()
        self.saved: SandboxSession | None = None  # the paired session, once connected
        # What waits for this session: the store knows it all, but for what phones sent
        # while it was live here (``take``); what this node left since it last looked
        # there is also handed over in memory (``handed``).
        self.stale = True
        self.handed: list[Item] = []
        self._task: asyncio.Task[None] | None = None

    async def take(self, item: dict[str, Any]) -> bool:
        """A phone's message, handed over in memory while this session is live: True
        once zapmux has recorded it; False if the session ended first (or is not
        connected), and the caller leaves it in the store instead."""
        if not self.connected or self._task is None or self._task.done():
            return False
        taken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.handed.append((None, item, taken))
        self.wakeup.set()
        return await taken

    def nudge(self) -> None:
        """Something may have changed in the store (another node paired the tenant, or
        left something for it): look there again."""
        self.stale = True
        self.wakeup.set()
        self.paired.set()

    async def connect(self) -> None:
        if self._task and not self._task.done():
            return
        self.paired.clear()
        self._task = asyncio.create_task(self._run(), name=f"sandbox-session-{self.tenant_id}")
        self._task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception():
            log.error("sandbox session %s crashed", self.tenant_id, exc_info=task.exception())

    async def _run(self) -> None:
        """The session; if it fails (zapmux could not take an event: the store is away),
        the connection ends as a disconnect, so the tenant reconnects and the event is
        handed over again, instead of the tenant looking connected with nothing moving."""
        try:
            await self._session()
        except Exception as exc:
            log.exception("sandbox session %s failed", self.tenant_id)
            if self._task is asyncio.current_task():  # not closed meanwhile
                await self._end(Disconnected(f"session failed: {type(exc).__name__}: {exc}"))
        finally:
            self.connected = False
            _untaken(self.handed)  # their senders leave them in the store
            self.handed = [item for item in self.handed if item[0] is not None]

    async def _session(self) -> None:
        self.stale = True  # at every connect: what waits is read from the store
        saved = await self.store.sandbox_session(self.tenant_id)
        if saved is None:
            saved = await self._pair_by_qr()
            if saved is None:
                return
        await asyncio.sleep(0.01)  # a handshake takes a moment, even here
        if saved.network_down:
            await self._end(Disconnected("dial tcp: network is unreachable (sandbox network_down)"))
            return
        self.saved = saved
        self.connected = True
        await self.sink(
            Connected(phone=saved.phone, push_name=saved.push_name, jid=_jid(saved.phone))
        )
        await self._pump()

    async def _pair_by_qr(self) -> SandboxSession | None:
        self.awaiting_scan = True
        try:
            for index, lifetime in enumerate(self.network.qr_lifetimes, start=1):
                code = f"2@{secrets.token_urlsafe(24)},{secrets.token_urlsafe(16)},{index}"
                now = time.time()
                await self.store.sandbox_issue_qr(
                    SandboxQr(code, self.tenant_id, now, now + lifetime, True)
                )
                await self.sink(
                    QrCode(code=code, expires_at=now + lifetime, index=index, total=QR_CODES)
                )
                saved = await self._wait_for_pairing(now + lifetime)
                if saved:
                    await self.sink(
                        PairSuccess(
                            phone=saved.phone, jid=_jid(saved.phone), push_name=saved.push_name
                        )
                    )
                    return saved
            await self.store.sandbox_retire_qr(self.tenant_id)
            await self.sink(QrTimeout())
            return None
        finally:
            self.awaiting_scan = False

    async def _wait_for_pairing(self, deadline: float) -> SandboxSession | None:
        while (left := deadline - time.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.paired.wait()
            self.paired.clear()  # a nudge from now on is looked at again
            saved = await self.store.sandbox_session(self.tenant_id)
            if saved:  # paired here or on another node
                return saved
        return None

    async def _pump(self) -> None:
        """Hand what the network holds for this tenant to zapmux, acking each after."""
        while self.connected:
            self.wakeup.clear()
            if not await self._hand_over(await self._waiting()):
                return
            if not (self.handed or self.stale):  # else more waits already
                await self.wakeup.wait()

    async def _waiting(self) -> list[Item]:
        """What waits, in order: from the store when this node may not know it all (at
        connect, or when another node left something), else what was handed over."""
        if not self.stale:
            items, self.handed = self.handed, []
            return items
        self.stale = False
        only_here = [item for item in self.handed if item[0] is None]  # not in the store
        self.handed = []
        found: list[Item] = [
            (pending_id, raw, None)
            for pending_id, raw in await self.store.sandbox_pending(self.tenant_id, PENDING_PAGE)
        ]
        if len(found) == PENDING_PAGE:
            self.stale = True  # more than a page: look again next round
        seen = {item[0] for item in found}
        self.handed = only_here + [item for item in self.handed if item[0] not in seen]
        return found

    async def _hand_over(self, pending: list[Item]) -> bool:
        """Emit each item in order; acknowledge the handled ones together afterwards
        (at least once: items handled before a crash come again, and zapmux knows
        them), and tell whoever waits for an item only in memory that it was taken. An
        item that can never be read is set aside (dead inbound). False when one ended
        the connection."""
        done: list[int] = []
        handled = 0
        try:
            for handled, (pending_id, raw, taken) in enumerate(pending):
                try:
                    item = json.loads(raw) if isinstance(raw, str) else raw
                    event = self._event(item)
                except (ValueError, KeyError, TypeError) as exc:  # never readable: aside
                    error = f"the sandbox cannot read it: {type(exc).__name__}: {exc}"
                    stored = raw if isinstance(raw, str) else json.dumps(raw)
                    await self.store.add_dead_inbound(self.tenant_id, stored, error)
                    await self.store.sandbox_ack(*done, *_stored(pending_id))
                    done = []
                    _took(taken)
                    continue
                if event is None:  # a fault happens once, whatever follows
                    await self.store.sandbox_ack(*done, *_stored(pending_id))
                    done = []
                    handled += 1
                    await self._apply_fault(item["fault"])
                    return False
                await self.sink(event)
                done.extend(_stored(pending_id))
                _took(taken)
            handled = len(pending)
        finally:
            _untaken(pending[handled:])
            await self.store.sandbox_ack(*done)
        return True

    def _event(self, item: dict[str, Any]) -> Event | None:
        """The event a pending item carries; None for a fault (which ends the connection)."""
        kind = item["kind"]
        if kind == "message":
            return self._incoming(item)
        if kind == "receipt":
            return Receipt(
                message_ids=tuple(item["message_ids"]),
                chat=_jid(item["phone"]),
                status=item["status"],
                timestamp=item["timestamp"],
            )
        if kind == "fault" and item["fault"] in FAULTS:
            return None
        raise ValueError(f"unknown pending item {kind!r}")

    def _incoming(self, item: dict[str, Any]) -> IncomingMessage:
        media, kind = None, "texto"
        if item.get("media"):
            m = item["media"]
            media = Media(
                kind=m["kind"],
                data=base64.b64decode(m["data"]),
                mimetype=m.get("mimetype") or "application/octet-stream",
                filename=m.get("filename"),
                caption=item.get("text") or None,
            )
            kind = {
                "image": "imagem",
                "audio": "audio",
                "video": "video",
                "document": "documento",
                "sticker": "figurinha",
            }[m["kind"]]
        phone, vote = item["phone"], item.get("vote")
        if vote:
            kind = "voto"
        jid = _jid(phone)
        return IncomingMessage(
            message_id=item["message_id"],
            chat=jid,
            sender=jid,
            phone=phone,
            message_type=kind,  # type: ignore[arg-type]
            text=item.get("text") or "",
            timestamp=item["timestamp"],
            push_name=f"Cliente {phone[-4:]}",
            media=media,
            vote=PollVote(vote["poll_id"], tuple(vote["selected_hashes"])) if vote else None,
        )

    async def _apply_fault(self, fault: str) -> None:
        events: dict[str, Event] = {
            "disconnect": Disconnected("websocket closed by server (sandbox disconnect)"),
            "network_down": Disconnected("network is unreachable (sandbox network_down)"),
            "logout": LoggedOut("the device was unlinked from the phone (sandbox logout)"),
            "replace": Replaced("another client connected with this session (sandbox replace)"),
            "ban": Banned("the number was banned (sandbox ban)"),
        }
        if fault == "logout":
            await self.store.sandbox_wipe(self.tenant_id)
            self.saved = None
        await self._end(events[fault])

    async def _end(self, event: Event) -> None:
        self.connected = False
        await self.sink(event)

    async def disconnect(self) -> None:
        self.connected = False
        task, self._task = self._task, None
        if task and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.awaiting_scan:
            await self.store.sandbox_retire_qr(self.tenant_id)
        if self.network.sessions.get(self.tenant_id) is self:
            del self.network.sessions[self.tenant_id]

    async def logout(self) -> None:
        await self.disconnect()
        await self.store.sandbox_wipe(self.tenant_id)

    async def pair_phone(self, phone: str) -> str:
        if not self.awaiting_scan:
            raise Conflict(
                "pairing codes are only issued while the tenant is waiting to pair",
                code="not_pairing",
            )
        letters = "ABCDEFGHJKLMNPQRSTVWXYZ23456789"
        code = "".join(secrets.choice(letters) for _ in range(8))
        code = f"{code[:4]}-{code[4:]}"
        await self.store.sandbox_add_pair_code(
            code, self.tenant_id, normalize_phone(phone), time.time() + PAIR_CODE_TTL_S
        )
        return code

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not self.connected:
            raise NotConnected("the tenant is not connected")
        saved = self.saved  # faults reach this node's sessions as well as the store
        if saved is None:
            raise EngineError("this session is no longer paired (sandbox)")
        if saved.network_down:  # the socket is dead before the drop is noticed: offline
            raise NotConnected("the network is unreachable (sandbox network_down)")
        phone = message.to.split("@", 1)[0]
        message_id, media = message.message_id or new_message_id(), message.media
        receipt = _receipt(message_id, phone, MessageStatus.DELIVERED)
        receipt_id = await self.store.sandbox_deliver_to_phone(
            InboxMessage(
                phone=phone,
                tenant_id=self.tenant_id,
                message_id=message_id,
                received_at=time.time(),
                text=message.text if media is None else (media.caption or message.text),
                media_kind=media.kind if media else None,
                media_mimetype=media.mimetype if media else None,
                media_filename=media.filename if media else None,
                media_size=len(media.data) if media else None,
                reply_to=message.reply_to,
                options=json.dumps(list(message.options)) if message.options else None,
            ),
            receipt=receipt,
        )
        assert receipt_id is not None
        self.network._wake(self.tenant_id, (receipt_id, receipt, None))
        return SendResult(message_id=message_id, timestamp=time.time())

    async def check(self, phones: Sequence[str]) -> list[NumberInfo]:
        if not self.connected:
            raise NotConnected("the tenant is not connected")
        return await self.network.lookup(phones)

    async def mark_read(self, chat: str, sender: str, message_ids: Sequence[str]) -> None:
        if not self.connected:
            raise NotConnected("the tenant is not connected")


def _stored(pending_id: int | None) -> tuple[int, ...]:
    """The ids to acknowledge for an item: none when it was only in memory."""
    return () if pending_id is None else (pending_id,)


def _took(taken: asyncio.Future[bool] | None) -> None:
    """Tell whoever waits for an item only in memory that zapmux has it."""
    if taken is not None and not taken.done():
        taken.set_result(True)


def _untaken(items: list[Item]) -> None:
    """The session ends before these were taken: their senders leave them in the store."""
    for _, _, taken in items:
        if taken is not None and not taken.done():
            taken.set_result(False)
