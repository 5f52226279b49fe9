"""Sending, number checks, the message log and media."""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from zapmux.api.deps import GatewayDep, TenantDep, TenantIdDep
from zapmux.api.models import CheckBody, MediaBody, SendBody
from zapmux.api.strict import StrictRoute
from zapmux.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    TenantNotConnected,
)
from zapmux.events import Media
from zapmux.fetch import fetch_media
from zapmux.gateway import Gateway
from zapmux.phone import normalize_phone
from zapmux.sending import SendRequest
from zapmux.states import MessageStatus, Status

router = APIRouter(tags=["messages"], route_class=StrictRoute)
MEDIA_KINDS = ("image", "document", "audio", "video")
_MIMETYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]{0,63}/[A-Za-z0-9][\w!#$&^.+-]{0,127}", re.ASCII)


async def _media(gw: Gateway, body: SendBody) -> Media | None:
    given = [(kind, getattr(body, kind)) for kind in MEDIA_KINDS if getattr(body, kind)]
    if not given:
        if not body.message and body.template is None:
            raise InvalidInput("give a message (text) or one of image, document, audio, video")
        return None
    if len(given) > 1:
        raise InvalidInput("send one media attachment per message")
    kind, spec = given[0]
    data, served_as = await _media_bytes(gw, spec)
    return Media(
        kind=kind,  # type: ignore[arg-type]
        data=data,
        mimetype=spec.mimetype or served_as or _guess_mimetype(kind, spec, data),
        filename=spec.filename,
        caption=spec.caption or body.message,
        ptt=spec.ptt,
        url=spec.url,
    )


_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"%PDF", "application/pdf"),
    (b"OggS", "audio/ogg"),
)
_DEFAULT_MIMETYPES = {
    "image": "image/jpeg",
    "audio": "audio/ogg",
    "video": "video/mp4",
    "document": "application/octet-stream",
}


def _guess_mimetype(kind: str, spec: MediaBody, data: bytes) -> str:
    """From the name, then the file's first bytes, then the kind's usual type."""
    guessed = mimetypes.guess_type(spec.filename or spec.url or "")[0]
    sniffed = next((mime for magic, mime in _MAGIC if data.startswith(magic)), None)
    return guessed or sniffed or _DEFAULT_MIMETYPES[kind]


async def _media_bytes(gw: Gateway, spec: MediaBody) -> tuple[bytes, str | None]:
    """The file, and the type its server declared (None for base64)."""
    limit = gw.settings.media_max_bytes
    if bool(spec.url) == bool(spec.base64):
        raise InvalidInput("media needs exactly one of url or base64")
    if spec.base64 is not None:
        if len(spec.base64) > limit * 4 // 3 + 4:  # refuse before decoding megabytes
            raise PayloadTooLarge(f"media is larger than {limit} bytes")
        try:
            data = base64.b64decode(spec.base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("media base64 is not valid base64") from exc
        if len(data) > limit:
            raise PayloadTooLarge(f"media is larger than {limit} bytes")
        return data, None
    return await fetch_media(spec.url or "", limit, gw.settings.media_allow_private)


def _template(gw: Gateway, tenant_id: str, body: SendBody) -> dict[str, Any] | None:
    """The Cloud API's ``template`` object, for engines that send templates."""
    if body.template is None:
        return None
    engine = gw.supervisor.runner(tenant_id).engine
    if not engine.templates:
        raise NotSupported(
            f"templates are a Cloud API feature; tenant {tenant_id} uses the {engine.name} engine",
            code="template_not_supported",
        )
    if body.image or body.document or body.audio or body.video:
        raise InvalidInput("a template carries its media in its components, not beside it")
    t = body.template
    return {"name": t.name, "language": {"code": t.language}, "components": t.components}


def _check_options(gw: Gateway, tenant_id: str, body: SendBody) -> None:
    """422 for more answers than the tenant's engine can offer."""
    engine = gw.supervisor.runner(tenant_id).engine
    if body.options and len(body.options) > engine.max_options:
        raise NotSupported(
            f"a question on the {engine.name} engine has at most {engine.max_options} answers",
            code="not_supported",
        )


async def _send(tenant_id: str, body: SendBody, gw: Gateway, key: str | None) -> JSONResponse:
    template = _template(gw, tenant_id, body)
    _check_options(gw, tenant_id, body)
    request = SendRequest(
        phone=normalize_phone(body.phone),
        text=body.message,
        media=await _media(gw, body),
        reply_to=body.reply_to,
        options=tuple(body.options) if body.options else None,
        send_at=body.send_at,
        template=template,
    )
    status, answer = await gw.sender.submit(tenant_id, request, key)
    return JSONResponse(answer, status_code=status)


_SEND_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "sent"},
    202: {"description": "queued, or scheduled (with send_at)"},
}


@router.post("/send/{tenant_id}", summary="Send a message (seed route)", responses=_SEND_DOC)
@router.post("/tenants/{tenant_id}/send", summary="Send a message", responses=_SEND_DOC)
async def send(
    tenant_id: TenantIdDep,
    body: SendBody,
    gw: GatewayDep,
    idempotency_key: str | None = Header(None, max_length=256),
) -> JSONResponse:
    return await _send(tenant_id, body, gw, idempotency_key)


@router.post("/tenants/{tenant_id}/check", summary="Which numbers are on WhatsApp")
async def check_numbers(tenant: TenantDep, body: CheckBody, gw: GatewayDep) -> dict[str, Any]:
    phones = [normalize_phone(p) for p in body.phones]
    runner = gw.supervisor.runner(tenant.id)
    if runner.status != Status.CONNECTED or runner.session is None:
        raise TenantNotConnected(
            f"tenant is {runner.status.value}; checks need a connection", status=runner.status.value
        )
    results = await runner.session.check(phones)
    for info in results:
        await gw.sender.remember_jid(runner, info)
    return {
        "success": True,
        "results": [{"phone": r.phone, "exists": r.exists, "jid": r.jid} for r in results],
    }


@router.get("/tenants/{tenant_id}/messages", summary="The message log, newest first")
async def list_messages(
    tenant: TenantDep,
    gw: GatewayDep,
    direction: str | None = Query(None, pattern="^(in|out)$"),
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, ge=0, le=2**62, description="cursor: next_before of a page"),
    status: str | None = Query(
        None, pattern="^(scheduled|queued|sent|delivered|read|failed|cancelled|received)$"
    ),
) -> dict[str, Any]:
    rows = await gw.store.list_messages(tenant.id, direction, limit, before, status)
    return {
        "success": True,
        "messages": [r.public() for r in rows],
        "next_before": rows[-1].id if len(rows) == limit else None,
    }


@router.get("/tenants/{tenant_id}/messages/{message_id}", summary="One message and its status")
async def get_message(tenant: TenantDep, message_id: str, gw: GatewayDep) -> dict[str, Any]:
    record = await gw.store.get_message(tenant.id, message_id[:128])
    if record is None:
        raise NotFound(
            f"no message {message_id[:128]!r} for tenant {tenant.id}", code="message_not_found"
        )
    return {"success": True, **record.public()}


@router.delete(
    "/tenants/{tenant_id}/messages/{message_id}",
    summary="Cancel a scheduled or queued message (409 once it went out)",
)
async def cancel_message(tenant: TenantDep, message_id: str, gw: GatewayDep) -> dict[str, Any]:
    message_id = message_id[:128]
    record = await gw.store.get_message(tenant.id, message_id)
    if record is None:
        raise NotFound(
            f"no message {message_id!r} for tenant {tenant.id}", code="message_not_found"
        )
    if record.status != MessageStatus.CANCELLED and not await gw.sender.cancel(
        tenant.id, message_id
    ):
        status = record.public()["status"]
        raise Conflict(
            f"message {message_id} is {status}: only scheduled or queued messages can be cancelled",
            code="not_cancellable",
            status=status,
        )
    record = await gw.store.get_message(tenant.id, message_id) or record
    logging.getLogger(f"zapmux.tenant.{tenant.id}").info("🚫 message %s cancelled", message_id)
    return {"success": True, **record.public()}


@router.get(
    "/tenants/{tenant_id}/messages/{message_id}/media",
    summary="A message's media file",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_media(tenant: TenantDep, message_id: str, gw: GatewayDep) -> Response:
    found = await gw.store.get_media(tenant.id, message_id[:128])
    if found is None:
        raise NotFound("that message has no media here", code="media_not_found")
    mimetype, filename, data = found
    # Always a download, never rendered: the bytes and their type come from a phone, and
    # an HTML "image" shown on the dashboard's origin would run as the dashboard.
    headers = {
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
    }
    return Response(data, media_type=_safe_mimetype(mimetype), headers=headers)


def _safe_mimetype(mimetype: str | None) -> str:
    """The type the phone gave (``audio/ogg; codecs=opus``) if it is one, else bytes."""
    text = mimetype or ""
    base = text.split(";", 1)[0].strip()
    ok = _MIMETYPE.fullmatch(base) and text.isascii() and text.isprintable()
    return text if ok else "application/octet-stream"


def content_disposition(filename: str | None) -> str:
    """``attachment`` with the name a phone gave (RFC 6266): any text, quotes, line
    breaks or emoji included, can neither break nor inject a header."""
    if not filename:
        return "attachment"
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
