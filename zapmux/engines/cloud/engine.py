"""The cloud engine and its sessions (see the package docstring)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from zapmux.backoff import Backoff
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
from zapmux.engines.cloud import questions, webhook
from zapmux.engines.cloud.graph import Graph, GraphError, GraphUnreachable, MediaTooLarge
from zapmux.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidInput,
    SendLater,
    Unauthorized,
)
from zapmux.events import Connected, Disconnected, Event, Failed, IncomingMessage, Media
from zapmux.phone import JID
from zapmux.store.base import Store
from zapmux.store.records import CloudAccount

log = logging.getLogger("zapmux.cloud")
#: How long a throttled message waits before its next try (full jitter, doubling).
THROTTLE_BACKOFF = Backoff(base=1.0, cap=60.0)
_CAPTIONED = {"image", "video", "document"}


class CloudEngine(Engine):
    """Sessions over Meta's Graph API, one shared HTTP client for every tenant."""

    name = "cloud"
    pairs = False
    templates = True
    max_options = questions.MAX_ROWS  # a list holds 10 rows

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._http: aiohttp.ClientSession | None = None

    @property
    def graph(self) -> Graph:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.cloud_timeout_s, sock_connect=5)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return Graph(self._http, self.settings.cloud_api_url)

    def open_session(self, tenant_id: str, sink: EventSink) -> CloudSession:
        return CloudSession(self, tenant_id, sink)

    async def is_paired(self, tenant_id: str) -> bool:
        """Paired means: its credentials are stored (Meta may still refuse them)."""
        return await self.store.cloud_account(tenant_id) is not None

    async def wipe(self, tenant_id: str) -> None:
        """Nothing: the credentials are the tenant's configuration, not a session that
        ``/clear-all`` with ``purge_sessions`` should drop. Logging out forgets them
        (:meth:`CloudSession.logout`); deleting the tenant deletes them."""

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- the webhook ------------------------------------------------------------------
    async def verify_subscription(self, mode: str | None, token: str | None) -> bool:
        """Meta's GET handshake: ``hub.mode=subscribe`` with some cloud tenant's token."""
        if mode != "subscribe" or not token:
            return False
        known = await self.store.cloud_verify_tokens()
        # every token is compared (in constant time), so timing tells nothing
        return sum(hmac.compare_digest(token, k) for k in known) > 0

    async def receive(self, body: bytes, signature: str | None) -> list[tuple[str, Event]]:
        """A post, checked: (tenant id, event) for each message and status in it.

        Unauthorized without a signature; Forbidden when it names no cloud tenant or
        the signature is not the app secret's of every tenant it names.
        """
        if not signature:
            raise Unauthorized(
                "the X-Hub-Signature-256 header is missing", code="signature_missing"
            )
        changes = webhook.changes(_parse(body))
        accounts = {c.phone_number_id: await self._account(c.phone_number_id) for c in changes}
        known = {number: a for number, a in accounts.items() if a is not None}
        if not known:
            raise Forbidden(
                "no cloud tenant has the phone number id(s) of this post", code="unknown_number"
            )
        if not all(webhook.signature_ok(body, signature, a.app_secret) for a in known.values()):
            raise Forbidden("the X-Hub-Signature-256 signature is wrong", code="signature_invalid")
        events: list[tuple[str, Event]] = []
        for change in changes:
            account = known.get(change.phone_number_id)
            if account is None:
                log.warning(
                    "❌ webhook for unknown phone number id %s ignored", change.phone_number_id
                )
                continue
            events += [(account.tenant_id, e) for e in await self._events(account, change.value)]
        return events

    async def _account(self, phone_number_id: str) -> CloudAccount | None:
        return await self.store.cloud_account_for_number(phone_number_id)

    async def _events(self, account: CloudAccount, value: dict[str, Any]) -> list[Event]:
        push_names = webhook.names(value)
        events: list[Event] = []
        for item in value.get("messages") or []:
            message = webhook.incoming(item, push_names) if isinstance(item, dict) else None
            if message is not None:
                events.append(await self._with_media(account, message))
        events += webhook.receipts(value)
        return events

    async def _with_media(self, account: CloudAccount, message: IncomingMessage) -> IncomingMessage:
        """The message with its attachment's bytes (as other engines hand them over);
        without, and said in the log, when Meta will not give them."""
        cloud_media = message.extra.get("cloud_media")
        if not isinstance(cloud_media, dict) or not cloud_media.get("id"):
            return message
        kind = webhook.MEDIA_TYPES[_kind_of(message)]
        limit = self.settings.media_max_bytes
        try:
            info = await self.graph.get(str(cloud_media["id"]), account.access_token)
            if int(info.get("file_size") or 0) > limit:
                raise MediaTooLarge(f"the file is {info['file_size']} bytes, over {limit}")
            data = await self.graph.download(str(info["url"]), account.access_token, limit)
        except (GraphError, GraphUnreachable, MediaTooLarge, KeyError, ValueError) as exc:
            log.warning("❌ media of %s not downloaded: %s", message.message_id, exc)
            return message
        media = Media(
            kind=kind,  # type: ignore[arg-type]
            data=data,
            mimetype=str(
                cloud_media.get("mime_type") or info.get("mime_type") or "application/octet-stream"
            ),
            filename=cloud_media.get("filename"),
            caption=cloud_media.get("caption"),
            ptt=bool(cloud_media.get("voice")),
        )
        return replace(message, media=media)


def _kind_of(message: IncomingMessage) -> str:
    back = {"imagem": "image", "audio": "audio", "video": "video", "documento": "document",
            "figurinha": "sticker"}  # fmt: skip
    return back.get(message.message_type, "document")


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidInput("the webhook body is not JSON") from exc


class CloudSession(Session):
    """One cloud tenant: its credentials, and whether Graph accepted them."""

    def __init__(self, engine: CloudEngine, tenant_id: str, sink: EventSink) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self.sink = sink
        self.account: CloudAccount | None = None
        self.throttled = 0  # throttles in a row; the backoff grows with them

    @property
    def path(self) -> str:
        assert self.account is not None
        return self.account.phone_number_id

    async def connect(self) -> None:
        """Ask Graph for the number: ``Connected`` with its display number and verified
        name; ``Failed`` when Meta refuses the token or the number (no retry);
        ``Disconnected`` when Graph cannot be reached or is in trouble (retried)."""
        account = await self.engine.store.cloud_account(self.tenant_id)
        if account is None:
            await self.sink(Failed("no Cloud API credentials stored for this tenant"))
            return
        try:
            number = await self.engine.graph.get(
                account.phone_number_id,
                account.access_token,
                fields="display_phone_number,verified_name",
            )
        except GraphUnreachable as exc:
            await self.sink(Disconnected(str(exc)))
            return
        except GraphError as exc:
            await self.sink(_refusal(exc) if not exc.transient else Disconnected(str(exc)))
            return
        self.account = account
        phone = "".join(ch for ch in str(number.get("display_phone_number") or "") if ch.isdigit())
        await self.sink(
            Connected(
                phone=phone or None,
                push_name=number.get("verified_name"),
                jid=str(JID(phone)) if phone else None,
            )
        )

    async def disconnect(self) -> None:
        self.account = None

    async def logout(self) -> None:
        """Nothing to unlink at Meta; the stored credentials are forgotten, so the tenant
        needs new ones (``PUT /tenants/{id}/cloud``), as others need a new pairing."""
        self.account = None
        await self.engine.store.cloud_forget(self.tenant_id)

    async def pair_phone(self, phone: str) -> str:
        raise Conflict(
            "cloud tenants connect with their access token: there is no pairing code",
            code="pairing_not_supported",
        )

    def _account(self) -> CloudAccount:
        if self.account is None:
            raise NotConnected("the tenant is not connected")
        return self.account

    async def send(self, message: OutgoingMessage) -> SendResult:
        account = self._account()
        body = await self._body(account, message)
        try:
            answer = await self.engine.graph.post(
                f"{self.path}/messages", account.access_token, body
            )
        except GraphUnreachable as exc:
            raise self._later(str(exc)) from None
        except GraphError as exc:
            raise await self._failed(exc) from None
        self.throttled = 0
        wamid = str(((answer.get("messages") or [{}])[0]).get("id") or "")
        if not wamid:
            raise EngineError("the Cloud API accepted the message but gave no id")
        return SendResult(message_id=wamid, timestamp=time.time())

    def _later(self, why: str) -> SendLater:
        self.throttled += 1
        return SendLater(why, retry_after=THROTTLE_BACKOFF.delay(self.throttled))

    async def _failed(self, exc: GraphError) -> Exception:
        """What a refused send becomes: wait and retry, the tenant failed, or this
        message failed."""
        if exc.transient:
            return self._later(f"the Cloud API asked to slow down: {exc}")
        if exc.token_rejected:
            self.account = None
            await self.sink(_refusal(exc))
            return NotConnected(f"Meta rejected the access token: {exc.message}")
        code, advice = webhook.FAILURES.get(exc.code or 0, ("meta_error", ""))
        return EngineError(
            f"{advice or exc.message} (Meta error {exc.code})", code=code, meta_code=exc.code
        )

    async def _body(self, account: CloudAccount, m: OutgoingMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": m.to.split("@", 1)[0],
        }
        if m.reply_to:
            body["context"] = {"message_id": m.reply_to}
        if m.template is not None:
            body["type"] = "template"
            body["template"] = m.template
        elif m.options:  # a question: reply buttons, or a list beyond three answers
            body["type"] = "interactive"
            body["interactive"] = questions.interactive(m.text or "", m.options)
        elif m.media is not None:
            body["type"] = m.media.kind
            body[m.media.kind] = await self._media(account, m.media)
        else:
            body["type"] = "text"
            body["text"] = {"body": m.text or ""}
        return body

    async def _media(self, account: CloudAccount, media: Media) -> dict[str, Any]:
        """By link when it came from a URL; else uploaded first and sent by id."""
        if media.url:
            ref: dict[str, Any] = {"link": media.url}
        else:
            try:
                uploaded = await self.engine.graph.upload(
                    f"{self.path}/media",
                    account.access_token,
                    media.data,
                    media.mimetype,
                    media.filename or f"{media.kind}",
                )
            except GraphUnreachable as exc:
                raise self._later(str(exc)) from None
            except GraphError as exc:
                raise await self._failed(exc) from None
            ref = {"id": str(uploaded.get("id"))}
        if media.caption and media.kind in _CAPTIONED:
            ref["caption"] = media.caption
        if media.filename and media.kind == "document":
            ref["filename"] = media.filename
        return ref

    async def check(self, phones: Sequence[str]) -> list[NumberInfo]:
        """The Cloud API cannot tell who is on WhatsApp: every number is taken as it is
        given (a send to one that is not fails later, code ``undeliverable``)."""
        self._account()
        return [NumberInfo(phone, True, str(JID(phone))) for phone in phones]

    async def mark_read(self, chat: str, sender: str, message_ids: Sequence[str]) -> None:
        account = self._account()
        for message_id in message_ids:
            try:
                await self.engine.graph.post(
                    f"{self.path}/messages",
                    account.access_token,
                    {"messaging_product": "whatsapp", "status": "read", "message_id": message_id},
                )
            except (GraphError, GraphUnreachable) as exc:
                raise EngineError(f"the Cloud API did not mark it read: {exc}") from None


def _refusal(exc: GraphError) -> Failed:
    if exc.token_rejected:
        return Failed(f"Meta rejected the access token: {exc.message} (code {exc.code})")
    return Failed(f"Meta refused this phone number id: {exc.message} (code {exc.code})")
