"""The hot routes, served without the framework's routing: ``POST /send/{id}`` (and
``POST /tenants/{id}/send``), and on the sandbox a phone's ``POST /sandbox/messages``.

Routing, dependency solving and the exception middleware cost more per send than the
send itself (issue 10). This ASGI middleware answers such a request when it is plainly
well formed: JSON (``application/json``) that the route's body model accepts, read as
strictly as every route reads it (no key twice; no NUL, except in what a phone sends).
It runs the route's own steps (the caller, the tenant in the path, the route's body)
and answers their errors as the exception handlers do. Anything else (a body the
model refuses, a query string, an odd header) goes on to the full route, with its body
handed over unread, so every answer is the one the route would give.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zapmux.api.deps import caller, require_admin, tenant_in_path
from zapmux.api.errors import _not_connected, _zapmux_error
from zapmux.api.messages import _send
from zapmux.api.models import PhoneMessageBody, SendBody
from zapmux.api.simulator import phone_sends
from zapmux.api.strict import NUL, RequestRefused, _has_nul, _no_duplicates
from zapmux.engines.base import NotConnected
from zapmux.errors import ZapmuxError
from zapmux.gateway import Gateway

SEND_PATH = re.compile(r"^/(?:send/([^/]+)|tenants/([^/]+)/send)$")
PHONE_PATH = "/sandbox/messages"
KEY_MAX = 256  # the route's Header(max_length=256) for Idempotency-Key
_JSON = b"application/json"


class HotRoutes:
    """ASGI middleware: serves plain sends (and phones' messages) itself, hands the rest
    to ``app``."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.phones = gateway.settings.engine == "sandbox"  # where the route exists

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant_id = self._route(scope)
        if tenant_id is False:
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive)
        if not complete:
            return  # the client left, or the body was over its limit (BodyLimit answers)
        model: type[BaseModel] = PhoneMessageBody if tenant_id is None else SendBody
        parsed = _parse(scope, body, model, allow_nul=tenant_id is None)
        if parsed is None:  # the full route answers (with its exact error)
            await self.app(scope, _replay(body, receive), send)
            return
        response = await self._answer(scope, tenant_id, *parsed)
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> str | Literal[False] | None:
        """A send's tenant id, None for a phone's message, False for any other request
        (or one this middleware leaves to the full route), before reading the body."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("query_string"):
            return False
        path = scope["path"]
        match = SEND_PATH.match(path)
        if (match is None and not (self.phones and path == PHONE_PATH)) or NUL in path:
            return False
        json_body = False
        for name, value in scope["headers"]:
            if b"\x00" in value:
                return False
            if name == b"content-type":
                json_body = value == _JSON or value.startswith(_JSON + b";")
        if not json_body:
            return False
        return (match.group(1) or match.group(2)) if match else None

    async def _answer(
        self, scope: Scope, tenant_id: str | None, body: BaseModel, key: str | None
    ) -> Response:
        request = Request(scope)
        gw = self.gateway
        try:
            who = await caller(request, gw)
            if tenant_id is None:  # a phone's message (the sandbox's own route)
                assert isinstance(body, PhoneMessageBody)
                answer = await phone_sends(body, gw, await require_admin(who))
                return JSONResponse(answer, status_code=201)
            assert isinstance(body, SendBody)
            tenant_id = await tenant_in_path(tenant_id, who, gw)
            return await _send(tenant_id, body, gw, key)
        except ZapmuxError as exc:
            return _zapmux_error(request, exc)
        except NotConnected as exc:
            return _not_connected(request, exc)


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
        if name == b"idempotency-key":
            key = value.decode("latin-1")
    if key is not None and len(key) > KEY_MAX:
        return None
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates)
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
