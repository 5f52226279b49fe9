"""Every error answered in one shape: ``{"success": false, "error": {code, message}}``."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from zapmux.api.strict import RequestRefused
from zapmux.engines.base import NotConnected
from zapmux.errors import InvalidTenantId, RateLimited, TenantNotConnected, ZapmuxError
from zapmux.ids import validate_tenant_id

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable snake_case ``code`` and a ``message`` for a person."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorBody(BaseModel):
    """The one shape of every error answer."""

    success: Literal[False]
    error: ErrorDetail


# Declared on every route so that /openapi.json tells the truth about errors (FastAPI
# would otherwise document its own 422 shape, which zapmux never sends).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused; `error.code` says why"},
    "5XX": {"model": ErrorBody, "description": "The server or the engine failed"},
}

_RAW_TENANT_ROUTE = re.compile(r"^/(?:tenants|send|restart|sandbox/tenants)/([^/]+)")


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"success": False, "error": error}, status_code=status)


def _zapmux_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZapmuxError)
    response = JSONResponse(exc.body(), status_code=exc.status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def _not_connected(request: Request, exc: Exception) -> JSONResponse:
    """An engine command found no connection: to a client, a 409 like any other."""
    assert isinstance(exc, NotConnected)
    return _zapmux_error(request, TenantNotConnected(exc.message, **exc.details))


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    problems = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
            "problem": e.get("msg"),
        }
        for e in errors
    ]
    summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems[:5])
    return error_response(422, "validation_error", summary, details=problems)


def _tenant_id_in_raw_path(request: Request) -> str | None:
    """The tenant id as the client wrote it (before %-decoding split it into segments)."""
    raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
    match = _RAW_TENANT_ROUTE.match(raw)
    return unquote(match.group(1)) if match else None


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, RequestRefused):
        return error_response(exc.status_code, exc.code, exc.detail)
    if exc.status_code in (404, 405) and (raw_id := _tenant_id_in_raw_path(request)) is not None:
        try:  # "/tenants/..%2Fx/status" matches no route once decoded: say why it is bad
            validate_tenant_id(raw_id)
        except InvalidTenantId as bad:
            return _zapmux_error(request, bad)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's words for a body json.loads gave up on (bad UTF-8, nested too deep)
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "an unexpected error happened; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ZapmuxError, _zapmux_error)
    app.add_exception_handler(NotConnected, _not_connected)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
