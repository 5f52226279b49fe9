"""The CLI's side of the HTTP API: a small synchronous client for a running server.

    RemoteError            anything that stops a command from getting its answer
    └── Unreachable        no HTTP answer at all (refused, timed out, bad URL)

Errors from the server (``{"success": false, "error": {"code", "message"}}``) become a
``RemoteError`` carrying that code, message and status, so each command prints one
clear line instead of a traceback.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """Where the server is and how to reach it; read from the environment (and `.env`).

    The server is found the way it finds its own port: ``ZAPMUX_URL`` when set, else
    ``ZAPMUX_HOST`` and ``ZAPMUX_PORT`` (or the old ``PORT``), else 127.0.0.1:4000.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    url: str | None = Field(default=None, validation_alias=AliasChoices("ZAPMUX_URL"))
    host: str | None = Field(default=None, validation_alias=AliasChoices("ZAPMUX_HOST"))
    port: int | None = Field(default=None, validation_alias=AliasChoices("ZAPMUX_PORT", "PORT"))
    api_key: str | None = Field(default=None, validation_alias=AliasChoices("ZAPMUX_API_KEY"))
    timeout_s: float = Field(
        default=10.0, gt=0, validation_alias=AliasChoices("ZAPMUX_CLIENT_TIMEOUT")
    )
    # The same names the server reads, so `doctor` checks the receiver the server uses.
    flask_url: str = Field(
        default="http://127.0.0.1:5000",
        validation_alias=AliasChoices("ZAPMUX_FLASK_URL", "FLASK_URL"),
    )

    @property
    def server_url(self) -> str:
        """The server's base URL; a URL without a scheme (``localhost:4811``) is http."""
        if self.url and self.url.strip():
            url = self.url.strip()
            return (url if "://" in url else f"http://{url}").rstrip("/")
        host = (self.host or "").strip()
        if host in {"", "0.0.0.0", "::", "[::]"}:  # bound everywhere: reach it here
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port or 4000}"


class RemoteError(Exception):
    """The server did not give the answer a command needed."""

    def __init__(self, message: str, code: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status else ""
        return f"{where}{self.code}: {self.message}"


class Unreachable(RemoteError):
    """No HTTP answer came back from the server."""


class Remote:
    """A running zapmux server, spoken to over HTTP with the admin key when one is set."""

    def __init__(self, settings: ClientSettings, transport: httpx.BaseTransport | None = None):
        headers = {"X-Api-Key": settings.api_key} if settings.api_key else {}
        self.url = settings.server_url
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=settings.timeout_s, transport=transport
        )

    def __enter__(self) -> Remote:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; any answer under 400 is returned, the rest raise RemoteError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach zapmux at {self.url}: {_reason(exc)}") from exc
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET a JSON object."""
        return _json(self.request("GET", path, params=params or None))

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a JSON object (an empty one when no body is given) and return the answer."""
        return _json(self.request("POST", path, json=body or {}))

    def delete(self, path: str) -> dict[str, Any]:
        """DELETE and return the answer."""
        return _json(self.request("DELETE", path))


def error_from(response: httpx.Response) -> RemoteError:
    """The RemoteError for a failed answer, from its error body when it has one."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):  # FastAPI's own {"detail": …} or an odd proxy page
        error = {}
    message = error.get("message") or response.text.strip()[:200] or response.reason_phrase
    if response.status_code == 401:
        message += "; set ZAPMUX_API_KEY or pass --api-key"
    return RemoteError(message, error.get("code") or "http_error", response.status_code)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise RemoteError("the server answered with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise RemoteError("the server answered with JSON that is not an object")
    return body


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return (
            f"{exc or 'connection failed'} (is `zapmux serve` running? point at it with "
            "--url, ZAPMUX_URL or ZAPMUX_PORT)"
        )
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__
