"""The hot routes, served without the framework's routing: ``POST /send/{id}`` (and
``POST /tenants/{id}/send``), and on the sandbox a phone's ``POST /sandbox/messages``.

Routing, dependency solving and the middleware stack cost more per send than the send
itself (issue 10). :class:`HotRoutes` is the application's front door (``ZapmuxApp``
calls it before its middleware): it answers such a request when it is plainly well
formed: JSON (``application/json``) with a ``Content-Length`` within the route's body
limit, for a tenant this node runs, that the route's body model accepts, read as
strictly as every route reads it (no key twice; no NUL, except in what a phone sends).
It runs the route's own steps (the caller, the tenant in the path, the route's body)
and answers their errors as the exception handlers do; anything unexpected gets the
500 the server-error middleware would send, and is raised on to the server's log.
Anything else (a body the model refuses, a query string, an odd header, a body sent
in chunks or over the limit, a tenant another node runs) goes to the whole stack
(``app``: the body limit, forwarding, the full route), with its body handed over as
it came, so every answer is the one the stack would give.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zapmux.api.deps import caller, require_admin, tenant_in_path
from zapmux.api.errors import _not_connected, _unexpected, _zapmux_error
from zapmux.api.forward import owner_elsewhere
from zapmux.api.messages import _send
from zapmux.api.models import PhoneMessageBody, SendBody
from zapmux.api.simulator import phone_sends
from zapmux.api.strict import NUL, RequestRefused, _has_nul, loads
from zapmux.engines.base import NotConnected
from zapmux.errors import ZapmuxError
from zapmux.gateway import Gateway

SEND_PATH = re.compile(r"^/(?:send/([^/]+)|tenants/([^/]+)/send)$")
PHONE_PATH = "/sandbox/messages"
KEY_MAX = 256  # the route's Header(max_length=256) for Idempotency-Key
_JSON = b"application/json"


class HotRoutes:
    """The front door: serves plain sends (and phones' messages) itself, hands the rest
    to ``app`` (the whole stack)."""

    def __init__(self, app: ASGIApp, gateway: Gateway, send_limit: int, json_limit: int) -> None:
        self.app = app
        self.gateway = gateway
        self.phones = gateway.settings.engine == "sandbox"  # where the route exists
        self.send_limit = send_limit  # the body limits of the send routes and of others
        self.json_limit = json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant_id = self._route(scope)
        if tenant_id is False or (
            tenant_id is not None and await owner_elsewhere(self.gateway, scope) is not None
        ):
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive)
        if not complete:
            return  # the client left
        model: type[BaseModel] = PhoneMessageBody if tenant_id is None else SendBody
        parsed = _parse(scope, body, model, allow_nul=tenant_id is None)
        if parsed is None:  # the full route answers (with its exact error)
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            response = await self._answer(scope, tenant_id, *parsed)
        except Exception as exc:  # as the server-error middleware: a 500, and to the log
            await _unexpected(Request(scope), exc)(scope, receive, send)
            raise
        if isinstance(response, bytes):
            await _created(send, response)
        else:
            await response(scope, receive, send)

    def _route(self, scope: Scope) -> str | Literal[False] | None:
        """A send's tenant id, None for a phone's message, False for any other request
        (or one this door leaves to the stack), before reading the body."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("query_string"):
            return False
        path = scope["path"]
        match = SEND_PATH.match(path)
        if (match is None and not (self.phones and path == PHONE_PATH)) or NUL in path:
            return False
        json_body = False
        length = b""
        for name, value in scope["headers"]:
            if b"\x00" in value or name == b"transfer-encoding":
                return False
            if name == b"content-type":
                json_body = value == _JSON or value.startswith(_JSON + b";")
            elif name == b"content-length":
                length = value
        limit = self.send_limit if match else self.json_limit
        if not json_body or not length.isdigit() or int(length) > limit:
            return False  # the body limit answers what is over it (or of unknown size)
        return (match.group(1) or match.group(2)) if match else None

    async def _answer(
        self, scope: Scope, tenant_id: str | None, body: BaseModel, key: str | None
    ) -> Response | bytes:
        """The route's answer: a response, or the body of a phone's 201."""
        request = Request(scope)
        gw = self.gateway
        try:
            who = await caller(request, gw)
            if tenant_id is None:  # a phone's message (the sandbox's own route)
                assert isinstance(body, PhoneMessageBody)
                answer = await phone_sends(body, gw, await require_admin(who))
                return _ENCODE(answer).encode()  # as JSONResponse renders it
            assert isinstance(body, SendBody)
            tenant_id = await tenant_in_path(tenant_id, who, gw)
            return await _send(tenant_id, body, gw, key)
        except ZapmuxError as exc:
            return _zapmux_error(request, exc)
        except NotConnected as exc:
            return _not_connected(request, exc)


#: JSON as ``JSONResponse`` writes it (starlette's ``render``), the encoder built once.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


async def _created(send: Send, body: bytes) -> None:
    """What ``JSONResponse(content, status_code=201)`` sends (``body`` is ``content``
    rendered), without building one per message: a phone's answer."""
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and whether it arrived whole."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks), True


def _parse(
    scope: Scope, body: bytes, model: type[BaseModel], allow_nul: bool
) -> tuple[BaseModel, str | None] | None:
    """The body and Idempotency-Key, or None when the full route must answer."""
    key = None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":  # the first, as the route's Header() takes it
            key = value.decode("latin-1")
            break
    if key is not None and len(key) > KEY_MAX:
        return None
    try:
        value = loads(body)
    except (ValueError, RequestRefused, RecursionError):
        return None
    if not isinstance(value, dict) or (not allow_nul and _has_nul(value)):
        return None
    try:
        return model.model_validate(value), key
    except ValidationError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over ``body`` (already read) first, then the client's own."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
