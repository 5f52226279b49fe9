"""Every route reads its request strictly: JSON without duplicate keys, and no NUL.

A JSON object that names a key twice is ambiguous (parsers disagree on which one
wins: ``{"tenantId": "a", "tenantId": "b"}``), so it is refused rather than guessed.
NUL (U+0000) is refused anywhere in a request (body, path, query, headers): PostgreSQL
text cannot hold it, and the answer must be the same 400 on every store. Text that
arrives from WhatsApp is kept instead (see ``events.storable``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

NUL = "\x00"


class RequestRefused(HTTPException):
    """A 400 with its own error code, raised while the request is read."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(status_code=400, detail=message)
        self.code = code


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RequestRefused(
                "duplicate_key", f"the JSON object names {key[:64]!r} more than once"
            )
        seen[key] = value
    return seen


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def loads(body: bytes) -> Any:
    """``json.loads(body)`` refusing a key named twice (``RequestRefused``), with the
    decoder built once instead of at every call."""
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _refuse_nul() -> RequestRefused:
    return RequestRefused(
        "nul_character", "the request contains a NUL character (\\u0000), which is not allowed"
    )


class StrictRequest(Request):
    allow_nul = False

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            value = loads(body)
            if not self.allow_nul and _has_nul(value):
                raise _refuse_nul()
            self._json = value
        return self._json


class NulTextRequest(StrictRequest):
    allow_nul = True


class StrictRoute(APIRoute):
    """A route that reads its request with :class:`StrictRequest`."""

    request_class: type[StrictRequest] = StrictRequest

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            scope = request.scope
            if (
                NUL in scope["path"]
                or b"%00" in scope.get("query_string", b"")
                or any(b"\x00" in value for _name, value in scope["headers"])
            ):
                raise _refuse_nul()
            return await handler(self.request_class(scope, request.receive))

        return strict


class SimulatorRoute(StrictRoute):
    """The sandbox's routes play a phone: its text may hold NUL, as WhatsApp's can."""

    request_class = NulTextRequest
