"""Meta's Graph API, the little of it the Cloud API engine uses, and its errors.

Every call carries the tenant's access token as ``Authorization: Bearer``; an error
answer is Graph's ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``, raised as :class:`GraphError` so the engine decides by ``code``.
The token is never put in a message, a log line or an exception.
"""

from __future__ import annotations

from typing import Any

import aiohttp

#: Access token expired, revoked or invalid (any subcode).
TOKEN_REJECTED = 190
#: Too many messages for this number (throughput), or to this one customer (pair rate).
THROTTLED = frozenset({130429, 131056})
#: Graph's own rate limits (application, user, business use case): wait and retry.
GRAPH_RATE_LIMITS = frozenset({4, 17, 32, 613, 80007})


class GraphError(Exception):
    """Graph answered with an error object."""

    def __init__(
        self,
        http_status: int,
        code: int | None,
        message: str,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(f"{message} (Meta error {code}, HTTP {http_status})")
        self.http_status = http_status
        self.code = code
        self.message = message
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id

    @property
    def token_rejected(self) -> bool:
        return self.http_status == 401 or self.code == TOKEN_REJECTED

    @property
    def throttled(self) -> bool:
        return self.http_status == 429 or self.code in THROTTLED or self.code in GRAPH_RATE_LIMITS

    @property
    def transient(self) -> bool:
        """Worth trying again later: throttling, or Meta's own trouble (5xx)."""
        return self.throttled or self.http_status >= 500


class MediaTooLarge(Exception):
    """A file Meta holds is larger than zapmux keeps (``ZAPMUX_MEDIA_MAX_BYTES``)."""


class GraphUnreachable(Exception):
    """No answer from Graph (connection refused, DNS, TLS): nothing was sent."""


class Graph:
    """Calls to ``base_url`` (``ZAPMUX_CLOUD_API_URL``) over one shared HTTP session."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")

    async def get(self, path: str, token: str, **params: str) -> dict[str, Any]:
        return await self._call("GET", path, token, params=params)

    async def post(self, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, token, json=body)

    async def upload(
        self, path: str, token: str, data: bytes, mimetype: str, filename: str
    ) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mimetype)
        form.add_field("file", data, content_type=mimetype, filename=filename)
        return await self._call("POST", path, token, data=form)

    async def download(self, url: str, token: str, limit: int) -> bytes:
        """A media file's bytes from the URL Graph gave for it (it wants the token too);
        MediaTooLarge past ``limit`` bytes, read no further."""
        try:
            async with self.http.get(url, headers=_auth(token)) as response:
                if response.status >= 400:
                    raise GraphError(
                        response.status, None, f"media download: HTTP {response.status}"
                    )
                data = await response.content.read(limit + 1)
                if len(data) > limit:
                    raise MediaTooLarge(f"the file is over {limit} bytes")
                return data
        except aiohttp.ClientConnectionError as exc:
            raise GraphUnreachable(f"media download: {type(exc).__name__}") from None

    async def _call(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            async with self.http.request(method, url, headers=_auth(token), **kwargs) as response:
                body = await _json(response)
        except aiohttp.ClientConnectorError as exc:
            # `from None`: the chained error would name the request, never the token,
            # but a traceback has no business carrying the request either.
            raise GraphUnreachable(f"cannot reach the Graph API: {type(exc).__name__}") from None
        if response.status >= 400 or "error" in body:
            raise _error(response.status, body)
        return body


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


def _error(status: int, body: dict[str, Any]) -> GraphError:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    code = error.get("code")
    subcode = error.get("error_subcode")
    return GraphError(
        http_status=status,
        code=code if isinstance(code, int) else None,
        message=str(error.get("message") or f"HTTP {status}"),
        subcode=subcode if isinstance(subcode, int) else None,
        fbtrace_id=error.get("fbtrace_id"),
    )
