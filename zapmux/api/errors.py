"""Every error answered in one shape: ``{"success": false, "error": {code, message}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from zapmux.errors import RateLimited, ZapmuxError

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"success": False, "error": error}, status_code=status)


def _zapmux_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZapmuxError)
    response = JSONResponse(exc.body(), status_code=exc.status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


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


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "an unexpected error happened; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ZapmuxError, _zapmux_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
