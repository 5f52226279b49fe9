"""The webhook deliverer's HTTP client: one POST, its status and ``Retry-After``.

A webhook attempt needs little of a general HTTP client: POST a JSON body to a URL,
read the status line and one header, throw the body away, keep the connection for
the next attempt. Through aiohttp that cost a quarter of the server's time per
inbound message (issue 10: request and response objects, header multidicts, payload
registries, a timer per request); here it is one bytes join and llhttp (httptools,
the parser uvicorn already serves with) reading the answer.

What it does, and does not:

- HTTP/1.1 over TCP, or TLS for ``https`` (the system's trusted certificates, the
  host name checked, as aiohttp does by default). Keep-alive: idle connections are
  kept per origin and reused; one the receiver has closed is dropped when it closes,
  one idle for ``KEEP_IDLE_S`` is closed (one timer for all, only while any is idle).
  A reused connection that the receiver closed just as the request went out (no byte
  of an answer came back) is retried once on a new connection: the receiver either
  never saw it or dedupes it by ``X-Zapmux-Delivery`` (webhooks are at least once).
- Host names go through ``resolver`` (the webhook resolver, which refuses names that
  lead to link-local or metadata addresses) when a connection is opened; the
  connection is made to the address it returned, TLS still checks the name. A post
  that may not reach the operator's network (``private_ok=False``: a webhook a
  tenant token set) refuses loopback and private addresses too, and never takes a
  connection a post that may reach them opened (the pool is kept apart).
- The whole attempt (connect, send, answer) has one ``timeout_s``: ``TimeoutError``.
  On a kept connection (nearly every attempt) it is one timer of the loop, which fails
  the answer and closes the connection; ``asyncio.timeout`` (an object, a timer, a
  cancel scope per attempt) is kept for the rare attempt that connects.
- A path or query is sent percent-encoded where it holds what a request line may not
  (spaces, non-ASCII: UTF-8), as it came otherwise.
- No redirects (a 3xx is an answer like any other), no proxies from the environment,
  no cookies, no compression, no ``Expect: 100-continue``.
- Failures raise :class:`WebhookHTTPError` (an ``OSError``) with a message for
  ``last_error``: ``Cannot connect to host H:P: …``, ``Connection closed …``,
  ``Invalid HTTP answer …``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httptools
from aiohttp.abc import AbstractResolver

from zapmux.webhook_url import address_of, private, private_refusal

KEEP_IDLE_S = 15.0  # an idle connection older than this is closed, not reused
MAX_IDLE = 64  # idle connections kept per origin
_URLS_KEPT = 1024  # parsed URLs remembered
_KEEP = "!#$%&'()*+,/:;=?@[]~"  # left as they are in a path or query (escapes included)


#: Where idle connections are kept: the origin (scheme, host, port), and whether the
#: posts that take them may reach a private address.
_Pool = tuple[tuple[str, str, int], bool]


class WebhookHTTPError(OSError):
    """The attempt got no HTTP answer (it may pass: the deliverer retries it)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL taken apart once: where to connect and the request's first lines."""

    origin: tuple[str, str, int]  # scheme, host, port
    head: bytes  # "POST /path HTTP/1.1\r\nHost: …\r\n"

    @classmethod
    def of(cls, url: str) -> _Target:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        if scheme not in ("http", "https") or not host:
            raise WebhookHTTPError(f"Invalid webhook URL {url!r}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise WebhookHTTPError(f"Invalid webhook URL {url!r}: {exc}") from exc
        target = quote(parts.path or "/", safe=_KEEP)
        if parts.query:
            target += "?" + quote(parts.query, safe=_KEEP)
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            shown += f":{port}"
        head = f"POST {target} HTTP/1.1\r\nHost: {shown}\r\n"
        return cls((scheme, host, port), head.encode("ascii"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its answer parsed by llhttp."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the deadline of the answer
        self.closed = False
        self.idle_since = 0.0
        self.got_bytes = False
        self._retry_after: bytes | None = None
        self._status = 0
        self._headers_done = False
        self._keep = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WebhookHTTPError(f"Invalid HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done:  # an answer ended by the close (no length given)
            self._keep = False
            self.on_message_complete()
        why = f": {exc}" if exc else ""
        self._fail(WebhookHTTPError(f"Connection closed before an answer{why}"))

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._headers_done = True
        self._keep = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self._headers_done = False
        if 100 <= self._status < 200:
            return  # an interim answer (103 Early Hints…): the final one follows
        self._disarm()
        answer, self.answer = self.answer, None
        if not self._keep:
            self.close()
        if answer is not None and not answer.done():
            retry_after = self._retry_after.decode("latin-1") if self._retry_after else None
            answer.set_result(Answer(self._status, retry_after))

    # use
    def send(self, request: bytes, deadline: float | None = None) -> asyncio.Future[Answer]:
        """The answer to come; by ``deadline`` (the loop's time), else ``TimeoutError``
        and the connection closed."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.answer = loop.create_future()
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._timed_out)
        self.got_bytes = self._headers_done = False
        self._retry_after, self._status = None, 0
        self.transport.write(request)
        return self.answer

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError())
        self.close()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reusable(self, now: float) -> bool:
        return (
            not self.closed
            and self._keep
            and self.answer is None
            and now - self.idle_since < KEEP_IDLE_S
        )

    def _fail(self, exc: Exception) -> None:
        self._disarm()
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()


class WebhookClient:
    """POSTs webhook bodies (see the module docstring); ``close`` when done."""

    def __init__(
        self, timeout_s: float, resolver: AbstractResolver, tls: ssl.SSLContext | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.resolver = resolver
        self._idle: dict[_Pool, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._tls = tls  # None: the system's trusted certificates, made when first needed
        self._sweep: asyncio.TimerHandle | None = None  # set while connections are idle

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], private_ok: bool = True
    ) -> Answer:
        """The answer's status and ``Retry-After``; raises ``TimeoutError`` after
        ``timeout_s``, :class:`WebhookHTTPError` when no answer came (or the host
        resolves to a private address ``private_ok`` forbids)."""
        target = self._target(url)
        pool = (target.origin, private_ok)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = b"".join(
            (target.head, b"Content-Length: %d\r\n" % len(body), lines.encode("latin-1"),
             b"\r\n", body)
        )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        conn = self._reuse(pool)
        if conn is not None:
            try:
                return await self._exchange(conn, pool, request, deadline)
            except WebhookHTTPError:
                if conn.got_bytes:
                    raise  # it answered, badly: not a stale connection
        async with asyncio.timeout_at(deadline):  # what is left of it, connecting
            conn = await self._connect(pool)
            return await self._exchange(conn, pool, request)

    async def _exchange(
        self, conn: _Connection, pool: _Pool, request: bytes, deadline: float | None = None
    ) -> Answer:
        try:
            answer = await conn.send(request, deadline)
        except BaseException:
            conn.close()  # a timeout or a cancel mid-answer: the connection is unusable
            raise
        if not conn.closed:
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(pool, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                if self._sweep is None:
                    loop = asyncio.get_running_loop()
                    self._sweep = loop.call_later(KEEP_IDLE_S, self._close_stale)
            else:
                conn.close()
        return answer

    def _close_stale(self) -> None:
        """Close what has been idle ``KEEP_IDLE_S``; again later while any stays idle
        (no timer at all once none is)."""
        self._sweep = None
        now = time.monotonic()
        for pool, idle in list(self._idle.items()):
            kept = []
            for conn in idle:
                if conn.reusable(now):
                    kept.append(conn)
                else:
                    conn.close()
            if kept:
                self._idle[pool] = kept
            else:
                del self._idle[pool]
        if self._idle:
            self._sweep = asyncio.get_running_loop().call_later(KEEP_IDLE_S, self._close_stale)

    def _reuse(self, pool: _Pool) -> _Connection | None:
        idle = self._idle.get(pool)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now):
                return conn
            conn.close()
        return None

    async def _connect(self, pool: _Pool) -> _Connection:
        (scheme, host, port), private_ok = pool
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if scheme == "https" else None
        try:
            found = await self.resolver.resolve(host, port, socket.AF_UNSPEC)
        except OSError as exc:
            raise WebhookHTTPError(f"Cannot connect to host {host}:{port}: {exc}") from exc
        if not private_ok:
            for address in found:
                if private(address_of(address)):
                    why = private_refusal(host, address["host"])
                    raise WebhookHTTPError(f"Cannot connect to host {host}:{port}: {why}")
        last: OSError | None = None
        for address in found:
            try:
                _, conn = await loop.create_connection(
                    _Connection,
                    address["host"],
                    address["port"],
                    family=address["family"],
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
            except OSError as exc:
                last = exc
            else:
                return conn
        raise WebhookHTTPError(f"Cannot connect to host {host}:{port}: {last}")

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _URLS_KEPT:
                self._targets.clear()
            target = self._targets[url] = _Target.of(url)
        return target

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
