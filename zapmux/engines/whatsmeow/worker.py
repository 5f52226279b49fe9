"""One tenant's WhatsApp session in its own process: ``python -m zapmux.engines.whatsmeow.worker``.

Why a process: neonize's Go glue aborts the whole process when two clients start,
stop or query at once, prints to stdout and configures logging at import. So each
worker holds exactly one neonize client, serializes every call into Go behind one
lock, and speaks to the server over two inherited pipes (``--fds``) with the frames of
:mod:`.protocol`; its stdout/stderr are only logs.

A worker lives as long as its tenant runs. After a disconnect it reports the event,
stops the Go client (which also ends whatsmeow's own auto-reconnect, linear and
uncapped) and waits, idle, for the server's next ``connect``: the supervisor's
backoff and start gate decide when it dials again. After a permanent end (logged
out, replaced, banned, failed, QR codes unscanned) it exits. It also exits when the
server goes away: end of the channel, or the parent-death signal. While it runs it
sends a ``heartbeat`` (with its RSS) every few seconds: the server's watchdog.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zapmux import events as ev
from zapmux.engines.whatsmeow import protocol
from zapmux.phone import JID

log = logging.getLogger("zapmux.worker")

QR_FIRST_S, QR_NEXT_S, QR_TOTAL = 60.0, 20.0, 6  # whatsmeow's code lifetimes
SOCKET_WAIT_S = 15.0  # how long pair_phone waits for the websocket to come up
STOP_TIMEOUT_S = 3.0  # bound on Go's Stop; the process exits after it anyway
ACK_WAIT_S = 30.0  # how long the server may take to record a message before it is resent
RESEND_BASE_S, RESEND_CAP_S = 0.5, 10.0  # backoff while the server cannot record one
MEDIA_WAIT_S = 60.0  # how long a message waits for its media before going without
MEDIA_MAX_BYTES = 16 * 1024 * 1024
HEARTBEAT_S = 10.0
_PR_SET_PDEATHSIG = 1
_DIALING = ("starting", "awaiting_qr", "connected")

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class CommandError(Exception):
    """A command failed; ``kind`` is one of ``protocol.ERROR_KINDS``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def default_client_factory(store: str, tenant_id: str) -> Any:
    """A neonize asyncio client on the tenant's own store (SQLite file or postgres URL)."""
    from neonize.aioze.client import NewAClient

    return NewAClient(store, uuid=tenant_id)


class TenantWorker:
    """Holds one neonize client and turns its callbacks into zapmux events.

    ``emit`` sends a protocol message to the server. States: idle → starting →
    awaiting_qr | connected → parking → idle (after a disconnect, ready to dial
    again) …, and stopping → stopped (the process ends). Calls into Go go through
    :meth:`_ffi` (one lock; refused unless connected).
    """

    def __init__(
        self,
        tenant_id: str,
        store: str,
        emit: Emit,
        *,
        client_factory: Callable[[str, str], Any] = default_client_factory,
        proxy: str | None = None,
        qr_first_s: float = QR_FIRST_S,
        qr_next_s: float = QR_NEXT_S,
        qr_total: int = QR_TOTAL,
        media_max_bytes: int = MEDIA_MAX_BYTES,
        media_wait_s: float = MEDIA_WAIT_S,
        resend_base_s: float = RESEND_BASE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id, self.store, self.emit = tenant_id, store, emit
        self._factory, self._proxy, self._clock = client_factory, proxy, clock
        self._media_max, self._media_wait = media_max_bytes, media_wait_s
        self._resend_base = resend_base_s
        self._qr_first, self._qr_next, self._qr_total = qr_first_s, qr_next_s, qr_total
        self.state = "idle"
        self.client: Any = None
        self.ended = asyncio.Event()
        self._ffi_lock = asyncio.Lock()
        self._event_order = asyncio.Lock()
        self._state_changed = asyncio.Condition()
        self._connect_task: asyncio.Future[Any] | None = None
        self._qr_timer: asyncio.Task[None] | None = None
        self._qr_index = 0
        self._session_over = False  # this dial's outcome was reported
        self.dials = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._event_ids = itertools.count(1)
        self._acks: dict[int, asyncio.Future[bool]] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting: the client is created (and subscribed) on the first dial
        and dials again on the later ones, in the same process."""
        await self._wait_while("parking", 2 * STOP_TIMEOUT_S + 1)  # the last dial's end
        if self.state != "idle":
            raise CommandError("invalid", f"already {self.state}")
        await self._set_state("starting")
        self._qr_index, self._session_over = 0, False
        self.dials += 1
        async with self._ffi_lock:
            if self.client is None:
                self.client = self._new_client()
            self._connect_task = await self.client.connect(self._proxy_settings())
        self._connect_task.add_done_callback(self._on_connect_done)

    def _new_client(self) -> Any:
        from zapmux.engines.whatsmeow import mapping

        client = self._factory(self.store, self.tenant_id)
        client.qr(self.on_qr)
        for event_type in mapping.SUBSCRIBED:
            client.event(event_type)(self.on_event)
        return client

    def _proxy_settings(self) -> Any:
        if not self._proxy:
            return None
        from neonize._binder import ProxySettings

        return ProxySettings(proxy_address=self._proxy)

    def _on_connect_done(self, task: asyncio.Future[Any]) -> None:
        # neonize's connect task ends when the Go session returns: a dial error, or Stop.
        if self._session_over or task.cancelled():
            return
        from zapmux.engines.whatsmeow import mapping

        exc = task.exception()
        reason = (str(exc) or type(exc).__name__) if exc else "whatsmeow session ended"
        self._spawn(self.end_session(mapping.dial_error(reason)))

    async def end_session(self, event: ev.Event) -> None:
        """Report how this dial ended (once); then wait for the next ``connect`` after a
        disconnect, or stop the process after a permanent end."""
        if self._session_over:
            return
        self._session_over = True
        await self.emit(protocol.encode_event(event))
        if isinstance(event, ev.Disconnected) and not self.ended.is_set():
            await self._park()
        else:
            await self.stop()

    async def finish(self, event: ev.Event | None) -> None:
        """Report the session's last event (if any and not yet said), then stop."""
        if event is not None and not self._session_over:
            self._session_over = True
            await self.emit(protocol.encode_event(event))
        await self.stop()

    async def _park(self) -> None:
        """Stop the Go client and go idle, ready to dial again in this process.

        Go's Stop is safe once the dial is over (it blocks mid-dial); if it does not
        return in time, or the session's call does not end, the process stops instead.
        """
        if self.state not in ("starting", "awaiting_qr", "connected"):
            return
        await self._set_state("parking")
        if self._qr_timer is not None:
            self._qr_timer.cancel()
        stopped = await self._stop_client()
        if self.state != "parking":
            return  # asked to stop meanwhile
        if stopped:
            await self._set_state("idle")
        else:
            log.warning("the WhatsApp client did not stop; ending the worker")
            await self.stop()

    async def _stop_client(self) -> bool:
        """Go's Stop, bounded; True once neonize's session call has returned."""
        task = self._connect_task
        async with self._ffi_lock:
            try:
                await asyncio.wait_for(self.client.stop(), STOP_TIMEOUT_S)
            except Exception as exc:
                log.warning("stopping the WhatsApp client failed: %s", exc or type(exc).__name__)
                return False
        if task is None:
            return True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        return task.done()

    async def stop(self) -> None:
        """Stop the Go client and mark the worker ended.

        Mid-dial (``starting``) Go's Stop blocks until the dial gives up, so the client
        is left alone: the process exits right after, which ends the dial too.
        """
        if self.state in ("stopping", "stopped"):
            await self.ended.wait()
            return
        self._session_over, was = True, self.state
        await self._set_state("stopping")
        if self._qr_timer is not None:
            self._qr_timer.cancel()
        if self.client is not None and was in ("awaiting_qr", "connected"):
            async with self._ffi_lock:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.client.stop(), STOP_TIMEOUT_S)
            if self._connect_task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(self._connect_task), STOP_TIMEOUT_S)
        await self._set_state("stopped")
        self.ended.set()

    async def _set_state(self, state: str) -> None:
        async with self._state_changed:
            self.state = state
            self._state_changed.notify_all()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- callbacks from neonize ----------------------------------------------------

    async def on_qr(self, _client: Any, data: bytes) -> None:
        """A new QR code from whatsmeow: show it, with zapmux's own expiry timer."""
        try:
            if self.state not in ("starting", "awaiting_qr") or self._qr_index >= self._qr_total:
                return
            self._qr_index += 1
            lifetime = self._qr_first if self._qr_index == 1 else self._qr_next
            code = data.decode() if isinstance(data, bytes) else str(data)
            await self._set_state("awaiting_qr")
            qr = ev.QrCode(code, self._clock() + lifetime, self._qr_index, self._qr_total)
            await self.emit(protocol.encode_event(qr))
            if self._qr_timer is not None:
                self._qr_timer.cancel()
            self._qr_timer = asyncio.create_task(self._qr_expire(self._qr_index, lifetime))
        except Exception:
            log.exception("QR handler failed")  # neonize drops handler errors silently

    async def _qr_expire(self, index: int, lifetime: float) -> None:
        await asyncio.sleep(lifetime)
        if index >= self._qr_total and self.state == "awaiting_qr":
            await self.end_session(ev.QrTimeout())

    async def on_event(self, client: Any, raw: Any) -> None:
        """A neonize event: map it, report it; end the session after a disconnect.

        neonize schedules each handler call as its own task; the lock (FIFO) keeps
        events in the order whatsmeow emitted them while one waits for its media.
        """
        async with self._event_order:
            try:
                await self._report(client, raw)
            except Exception:
                log.exception("event handler failed for %s", type(raw).__name__)

    async def _report(self, client: Any, raw: Any) -> None:
        if self.state not in _DIALING or self._session_over:
            return  # a late event of a client already stopped
        event = await self._map(client, raw)
        if event is None:
            return
        if isinstance(event, ev.Disconnected | ev.PermanentDisconnect | ev.QrTimeout):
            await self.end_session(event)
            return
        if isinstance(event, ev.PairSuccess | ev.Connected) and self._qr_timer is not None:
            self._qr_timer.cancel()
        if isinstance(event, ev.Connected):
            await self._set_state("connected")
        if isinstance(event, ev.IncomingMessage | ev.Receipt):
            await self.emit_until_recorded(protocol.encode_event(event))
        else:
            await self.emit(protocol.encode_event(event))

    async def emit_until_recorded(self, frame: dict[str, Any]) -> None:
        """Send an event the server must record, again and again until it says it has.

        neonize lets whatsmeow acknowledge a message as soon as the handler is scheduled,
        so this is where a message waits out a store hiccup on the server: it is resent
        (with backoff) until the server answers ``ack``, while the events behind it wait
        (the caller holds the event order). It gives up only when the worker ends.
        """
        frame = {**frame, "id": next(self._event_ids)}
        delay = self._resend_base
        while self.state != "stopped":
            answer = asyncio.get_running_loop().create_future()
            self._acks[frame["id"]] = answer
            try:
                await self.emit(frame)
                if await asyncio.wait_for(answer, ACK_WAIT_S):
                    return
            except TimeoutError:
                pass
            except ConnectionError:
                return  # the server is gone; the worker ends with it
            finally:
                self._acks.pop(frame["id"], None)
            log.warning("the server did not record %s; resending in %.1fs", frame["event"], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESEND_CAP_S)

    def acknowledge(self, message: dict[str, Any]) -> None:
        """The server's answer (``ack``/``nack``) to an event sent with an id."""
        answer = self._acks.get(message.get("id", -1))
        if answer is not None and not answer.done():
            answer.set_result(message.get("type") == "ack")

    async def _map(self, client: Any, raw: Any) -> ev.Event | None:
        from zapmux.engines.whatsmeow import mapping

        if type(raw).__name__ == "Connected":
            me = await self._ffi(lambda: client.get_me(), allow=("starting", "awaiting_qr"))
            return mapping.connected_event(me)
        event = mapping.to_event(raw, self._clock())
        if isinstance(event, ev.Disconnected) and self._qr_exhausted():
            return ev.QrTimeout()  # whatsmeow closes the socket itself after the last code
        if isinstance(event, ev.IncomingMessage):
            event = await self._with_phone(client, raw.Info.MessageSource, event)
            if event.vote is not None:
                return await self._with_vote(client, raw, event)
            return await self._with_media(client, raw, event)
        if isinstance(event, ev.Receipt):
            return await self._receipt_by_phone(client, raw.MessageSource, event)
        return event

    async def _with_phone(
        self, client: Any, source: Any, event: ev.IncomingMessage
    ) -> ev.IncomingMessage:
        """A message from a LID (a sender whose number WhatsApp hides) with the number
        in ``phone`` — from the message's other address, else whatsmeow's LID↔phone
        store — the chat as the phone JID, and the LID kept in ``extra["lid"]``."""
        from zapmux.engines.whatsmeow import mapping

        lid = mapping.lid_of(source.Sender, source.SenderAlt)
        if lid is None:
            return event
        phone = mapping.phone_of(source.Sender, source.SenderAlt)
        phone = phone or await self._phone_for_lid(client, lid)
        extra = {**event.extra, "lid": str(JID(lid.User, mapping.LID_SERVER))}
        if phone is None:
            return dataclasses.replace(event, extra=extra)  # unknown: the LID stays
        chat = event.chat
        if not event.is_group and source.Chat.Server == mapping.LID_SERVER:
            chat = await self._chat_by_phone(client, source, phone)
        return dataclasses.replace(event, phone=phone, chat=chat, extra=extra)

    async def _chat_by_phone(self, client: Any, source: Any, sender_phone: str) -> str:
        # A one-to-one chat is the other person: the sender, or (sent from the tenant's
        # phone) the recipient, whose number the message may carry beside the LID.
        from zapmux.engines.whatsmeow import mapping

        phone = sender_phone if not source.IsFromMe else mapping.phone_of(source.RecipientAlt)
        phone = phone or await self._phone_for_lid(client, source.Chat)
        return str(JID(phone)) if phone else mapping.jid_text(source.Chat)

    async def _receipt_by_phone(self, client: Any, source: Any, event: ev.Receipt) -> ev.Receipt:
        """A receipt from a LID-addressed chat names the chat by its phone JID, as the
        message was sent (the message ids match either way)."""
        from zapmux.engines.whatsmeow import mapping

        if source.IsGroup or source.Chat.Server != mapping.LID_SERVER:
            return event
        phone = mapping.phone_of(source.SenderAlt, source.RecipientAlt)
        phone = phone or await self._phone_for_lid(client, source.Chat)
        chat = str(JID(phone)) if phone else event.chat
        return dataclasses.replace(event, chat=chat)

    async def _phone_for_lid(self, client: Any, lid: Any) -> str | None:
        """The phone number whatsmeow's store maps this LID to, if it knows one."""
        from zapmux.engines.whatsmeow import mapping

        allow = ("starting", "awaiting_qr")  # offline messages may come before Connected
        bare = mapping.to_neonize_jid(str(JID(lid.User, lid.Server)))  # the user, not a device
        try:
            pn = await self._ffi(lambda: client.get_pn_from_lid(bare), allow)
        except Exception as exc:
            log.warning("no phone number for %s: %s", mapping.jid_text(bare), exc)
            return None
        return mapping.phone_of(pn) if pn is not None else None

    async def _with_vote(
        self, client: Any, raw: Any, event: ev.IncomingMessage
    ) -> ev.IncomingMessage:
        """A poll vote decrypted (whatsmeow holds the poll's secret in the session
        store); one that cannot be read still goes on, saying why."""
        from zapmux.engines.whatsmeow import mapping

        allow = ("starting", "awaiting_qr")  # offline messages may come before Connected
        assert event.vote is not None
        try:
            decrypted = await self._ffi(lambda: client.decrypt_poll_vote(raw), allow)
        except Exception as exc:
            log.warning("vote %s not decrypted: %s", event.message_id, exc)
            error = f"the vote could not be decrypted: {str(exc) or type(exc).__name__}"
            return dataclasses.replace(event, vote=dataclasses.replace(event.vote, error=error))
        return dataclasses.replace(event, vote=mapping.vote_of(event.vote.poll_id, decrypted))

    async def _with_media(
        self, client: Any, raw: Any, event: ev.IncomingMessage
    ) -> ev.IncomingMessage:
        """The message with its media downloaded; without it (logged) when too large or
        when the download fails, so that the message itself is never lost."""
        from zapmux.engines.whatsmeow import mapping

        attachment = mapping.attachment_of(raw.Message)
        if attachment is None:
            return event
        what = f"the {attachment.kind} of message {event.message_id}"
        if attachment.size > self._media_max:
            log.warning("%s not downloaded: %d bytes, over the limit of %d",
                        what, attachment.size, self._media_max)  # fmt: skip
            return event
        try:
            data = await self._download(client, attachment.request)
        except Exception as exc:
            log.warning("%s not downloaded: %s", what, str(exc) or type(exc).__name__)
            return event
        if len(data) > self._media_max:
            log.warning("%s dropped: %d bytes, over the limit of %d",
                        what, len(data), self._media_max)  # fmt: skip
            return event
        return dataclasses.replace(event, media=attachment.media(data))

    async def _download(self, client: Any, request: Any) -> bytes:
        # The call into Go cannot be cancelled: on timeout the message goes on without
        # its media while the download keeps the FFI lock until Go returns.
        allow = ("starting", "awaiting_qr")  # offline messages may come before Connected
        download = self._spawn(self._ffi(lambda: client.download_any(request), allow))
        download.add_done_callback(_note_late_failure)
        try:
            data = await asyncio.wait_for(asyncio.shield(download), self._media_wait)
        except TimeoutError:
            raise TimeoutError(f"no answer in {self._media_wait:g} s") from None
        return bytes(data or b"")

    def _qr_exhausted(self) -> bool:
        return self.state == "awaiting_qr" and self._qr_index >= self._qr_total

    # -- commands --------------------------------------------------------------------

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Run one command and return its reply frame."""
        op, args = message.get("op"), message.get("args") or {}
        reply: dict[str, Any] = {"type": "reply", "id": message.get("id")}
        try:
            handler = getattr(self, f"op_{op}", None) if op in protocol.OPS else None
            if handler is None:
                raise CommandError("invalid", f"unknown command {op!r}")
            reply.update(ok=True, result=await handler(**args))
        except CommandError as exc:
            reply.update(ok=False, error={"kind": exc.kind, "message": str(exc)})
        except TypeError as exc:
            reply.update(ok=False, error={"kind": "invalid", "message": str(exc)})
        except Exception as exc:
            log.warning("command %s failed: %s", op, exc)
            reply.update(ok=False, error={"kind": "engine", "message": str(exc) or repr(exc)})
        return reply

    async def _ffi(self, call: Callable[[], Awaitable[Any]], allow: tuple[str, ...] = ()) -> Any:
        # One call into Go at a time, and none while the client starts or stops.
        async with self._ffi_lock:
            if self.state != "connected" and self.state not in allow:
                raise CommandError("not_connected", f"WhatsApp session is {self.state}")
            return await call()

    async def op_connect(self) -> dict[str, Any]:
        await self.start()
        return {}

    async def op_stop(self) -> dict[str, Any]:
        self._spawn(self.finish(None))
        return {}

    async def op_logout(self) -> dict[str, Any]:
        await self._ffi(lambda: self.client.logout())
        self._session_over = True  # a logout ends the session without an event
        self._spawn(self.finish(None))
        return {}

    async def op_pair_phone(self, phone: str) -> dict[str, Any]:
        await self._wait_for_socket()
        code = await self._ffi(
            lambda: self.client.PairPhone(phone, show_push_notification=True),
            allow=("awaiting_qr",),
        )
        return {"code": code}

    async def _wait_for_socket(self) -> None:
        # A code can only be asked once the websocket is up (the first QR shows it).
        await self._wait_while("starting", SOCKET_WAIT_S)

    async def _wait_while(self, state: str, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the worker is no longer in ``state``."""
        async with self._state_changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._state_changed.wait_for(lambda: self.state != state), limit_s
                )

    async def op_send(self, **args: Any) -> dict[str, Any]:
        """Send; the id returned is whatsmeow's, the one receipts will carry (neonize
        cannot send with zapmux's own id)."""
        from zapmux.engines.whatsmeow import mapping, outgoing

        try:
            response, secret = await self._ffi(lambda: outgoing.send(self.client, args))
        except CommandError:
            raise
        except Exception as exc:
            raise CommandError(*mapping.send_failure(str(exc) or repr(exc))) from exc
        result = {"message_id": response.ID, "timestamp": float(response.Timestamp or time.time())}
        if secret:  # a poll: zapmux keeps its secret with the question
            result["poll_secret"] = base64.b64encode(secret).decode()
        return result

    async def op_check(self, phones: list[str]) -> list[dict[str, Any]]:
        from zapmux.engines.whatsmeow import mapping

        queries = ["+" + phone for phone in phones]
        answers = await self._ffi(lambda: self.client.is_on_whatsapp(*queries))
        found = {a.Query.lstrip("+"): a for a in answers}
        results = []
        for phone in phones:
            answer = found.get(phone)
            exists = bool(answer and answer.IsIn)
            jid = mapping.jid_text(answer.JID) if answer and exists else None
            results.append({"phone": phone, "exists": exists, "jid": jid})
        return results

    async def op_mark_read(self, chat: str, sender: str, message_ids: list[str]) -> dict[str, Any]:
        from neonize.utils.enum import ReceiptType

        from zapmux.engines.whatsmeow import mapping

        chat_jid, sender_jid = mapping.to_neonize_jid(chat), mapping.to_neonize_jid(sender)
        await self._ffi(
            lambda: self.client.mark_read(
                *message_ids, chat=chat_jid, sender=sender_jid, receipt=ReceiptType.READ
            )
        )
        return {}


def _note_late_failure(task: asyncio.Future[Any]) -> None:
    # Retrieve the outcome of a download nobody waits for any more (else asyncio warns).
    if not task.cancelled() and task.exception() is not None:
        log.debug("a media download failed after its message went on: %s", task.exception())


# -- the process -------------------------------------------------------------------------


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` when the parent dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def configure_logging(level: str) -> None:
    """Logs to stderr (the server captures it); set before neonize's basicConfig runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]  # neonize's basicConfig becomes a no-op
    root.setLevel(level.upper())


async def serve(args: argparse.Namespace) -> None:
    """Speak the protocol on the inherited pipes until the session ends."""
    command_fd, event_fd = (int(fd) for fd in args.fds.split(","))
    reader, writer = await protocol.open_channel(command_fd, event_fd)
    write_lock = asyncio.Lock()

    async def emit(message: dict[str, Any]) -> None:
        async with write_lock:
            writer.write(protocol.pack(message))
            await writer.drain()

    if not args.full_imports:
        from zapmux.engines.whatsmeow import lean

        lean.defer()  # neonize's link-preview and download packages: ~12 MB
    try:
        import neonize.aioze.client  # noqa: F401 - load Go before saying hello
    except Exception as exc:  # not installed, no libmagic, a glibc too old: retrying won't help
        from zapmux.engines.whatsmeow.availability import unavailable

        log.error("%s", unavailable(exc))
        await emit(protocol.encode_event(ev.Failed(reason=unavailable(exc))))
        return

    worker = TenantWorker(
        args.tenant, args.store, emit, proxy=args.proxy,
        qr_first_s=args.qr_first_s, qr_next_s=args.qr_next_s, qr_total=args.qr_total,
        media_max_bytes=min(args.media_max_bytes, protocol.MAX_MEDIA_BYTES),
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: worker._spawn(worker.finish(None)))
    # Ctrl+C in the server's terminal reaches the whole group: the server stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    await emit({"type": "hello", "pid": os.getpid()})
    reading = asyncio.create_task(read_commands(reader, worker, emit))
    ending = asyncio.create_task(worker.ended.wait())
    beating = asyncio.create_task(heartbeat(worker, emit, args.heartbeat_s))
    await asyncio.wait({reading, ending}, return_when=asyncio.FIRST_COMPLETED)
    if not worker.ended.is_set():  # the server went away: stop without a word
        await worker.finish(None)
    reading.cancel()
    beating.cancel()
    with contextlib.suppress(Exception):
        writer.close()


async def heartbeat(worker: TenantWorker, emit: Emit, every_s: float) -> None:
    """Tell the server, every ``every_s``, that this process is alive and how large it
    is: its watchdog ends a worker that falls silent, and recycles one that grew."""
    with contextlib.suppress(ConnectionError):
        while not worker.ended.is_set():
            await emit({"type": "heartbeat", "state": worker.state, "rss_kb": rss_kb()})
            await asyncio.sleep(every_s)


def rss_kb() -> int:
    """This process's resident set size in kB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


async def read_commands(reader: asyncio.StreamReader, worker: TenantWorker, emit: Emit) -> None:
    """Run each command as it arrives (the FFI lock serializes them) until EOF."""
    while (message := await protocol.read_frame(reader)) is not None:
        if message.get("type") == "command":
            worker._spawn(_answer(worker, message, emit))
        elif message.get("type") in ("ack", "nack"):
            worker.acknowledge(message)


async def _answer(worker: TenantWorker, message: dict[str, Any], emit: Emit) -> None:
    with contextlib.suppress(ConnectionError):
        await emit(await worker.handle(message))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tenant", required=True)
    parser.add_argument(
        "--store",
        default=os.environ.get(protocol.STORE_ENV),
        help=f"the whatsmeow SQLite file or postgres URL (default: ${protocol.STORE_ENV})",
    )
    parser.add_argument("--fds", required=True, help="COMMANDS,EVENTS: the inherited pipe ends")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--proxy", default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--qr-first-s", type=float, default=QR_FIRST_S)
    parser.add_argument("--qr-next-s", type=float, default=QR_NEXT_S)
    parser.add_argument("--qr-total", type=int, default=QR_TOTAL)
    parser.add_argument("--media-max-bytes", type=int, default=MEDIA_MAX_BYTES)
    parser.add_argument("--heartbeat-s", type=float, default=HEARTBEAT_S)
    parser.add_argument("--full-imports", action="store_true", help="do not defer any import")
    args = parser.parse_args(argv)
    if not args.store:
        parser.error(f"no store: give --store or set {protocol.STORE_ENV}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process."""
    args = parse_args(argv)
    set_parent_death_signal()
    if args.parent_pid and os.getppid() != args.parent_pid:
        os._exit(0)  # the server died before the signal was armed
    configure_logging(args.log_level)
    code = 0
    # Not asyncio.run: its shutdown joins the executor thread that Go's session holds
    # (and a Stop may hang mid-dial); leave without joining instead.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(args))
    except Exception:
        log.exception("worker failed")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
