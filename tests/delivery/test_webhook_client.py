"""The deliverer's HTTP client against receivers that answer the way real servers do:
keep-alive or not, a length or an answer ended by the close, slowly, wrongly, over
TLS. Each receiver is a raw asyncio server, so that every byte on the wire is ours."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import Names, wait_for
from zapmux import webhook_client
from zapmux.webhook_client import WebhookClient, WebhookHTTPError
from zapmux.webhook_url import webhook_resolver

OK = b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}'
BODY = b'{"message_id":"m1"}'
HEADERS = {"Content-Type": "application/json", "X-Zapmux-Delivery": "d1"}

#: How a receiver answers one request: (the answer's bytes, whether to close after it)
Answerer = Callable[[bytes], Awaitable[tuple[bytes, bool]]]


@dataclass
class RawReceiver:
    """Counts connections and keeps every request (head and body) it read."""

    answer: Answerer
    connections: int = 0
    hung_up: int = 0  # connections the client closed
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    self.hung_up += not exc.partial
                    raise
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                data, close = await self.answer(request)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        writer.close()

    def url(self, path: str = "/webhook/whatsapp") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawReceiver]]]:
    servers: list[tuple[asyncio.Server, RawReceiver]] = []
    handlers: set[asyncio.Task[None]] = set()

    async def start(answer: Answerer, tls: ssl.SSLContext | None = None) -> RawReceiver:
        receiver = RawReceiver(answer)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            await receiver.handle(reader, writer)

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
        receiver.port = server.sockets[0].getsockname()[1]
        servers.append((server, receiver))
        return receiver

    yield start
    for server, receiver in servers:
        server.close()
        for writer in receiver.writers:
            writer.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await asyncio.sleep(0.05)


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    http = WebhookClient(2.0, webhook_resolver())
    yield http
    await http.close()


def always(data: bytes, close: bool = False) -> Answerer:
    async def answer(_request: bytes) -> tuple[bytes, bool]:
        return data, close

    return answer


async def test_posts_the_body_and_headers_and_keeps_the_connection(
    serve: Callable[..., Awaitable[RawReceiver]], client: WebhookClient
) -> None:
    receiver = await serve(always(OK))
    for _ in range(5):
        answer = await client.post(receiver.url("/hook?x=1"), BODY, HEADERS)
        assert answer.status == 200 and answer.retry_after is None
    assert receiver.connections == 1  # kept alive
    head, _, body = receiver.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{receiver.port}".encode() in lines
    assert b"Content-Length: %d" % len(BODY) in lines
    assert b"Content-Type: application/json" in lines and b"X-Zapmux-Delivery: d1" in lines
    assert body == BODY


async def test_a_receiver_that_closes_after_each_answer(
    serve: Callable[..., Awaitable[RawReceiver]], client: WebhookClient
) -> None:
    closing = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    receiver = await serve(always(closing, close=True))
    statuses = [(await client.post(receiver.url(), BODY, HEADERS)).status for _ in range(3)]
    assert statuses == [204, 204, 204] and receiver.connections == 3


async def test_an_answer_without_length_ends_with_the_close(
    serve: Callable[..., Awaitable[RawReceiver]], client: WebhookClient
) -> None:
    unbounded = b"HTTP/1.0 202 Accepted\r\nContent-Type: text/plain\r\n\r\nqueued, thanks"
    receiver = await serve(always(unbounded, close=True))
    assert (await client.post(receiver.url(), BODY, HEADERS)).status == 202
    assert (await client.post(receiver.url(), BODY, HEADERS)).status == 202
    assert receiver.connections == 2


async def test_chunked_answers_retry_after_and_redirects_are_read_not_followed(
    serve: Callable[..., Awaitable[RawReceiver]], client: WebhookClient
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nslow \r\n4\r\ndown\r\n0\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n",
        ]
    )

    async def answer(_request: bytes) -> tuple[bytes, bool]:
        return next(answers), False

    receiver = await serve(answer)
    limited = await client.post(receiver.url(), BODY, HEADERS)
    assert (limited.status, limited.retry_after) == (429, "7")
    moved = await client.post(receiver.url(), BODY, HEADERS)
    assert (moved.status, moved.retry_after) == (301, None)
    assert len(receiver.requests) == 2 and receiver.connections == 1  # nothing followed


async def test_a_kept_connection_the_receiver_closed_meanwhile_is_replaced(
    serve: Callable[..., Awaitable[RawReceiver]], client: WebhookClient
) -> None:
    receiver = await serve(always(OK))
    assert (await client.post(receiver.url(), BODY, HEADERS)).status == 200
    for writer in receiver.writers:  # the receiver's keep-alive timeout
        writer.close()
    await asyncio.sleep(0.05)
    assert (await client.post(receiver.url(), BODY, HEADERS)).status == 200
    assert receiver.connections == 2 and len(receiver.requests) == 2


async def test_a_slow_receiver_times_out_and_a_wrong_one_is_an_error(
    serve: Callable[..., Awaitable[RawReceiver]],
) -> None:
    async def never(_request: bytes) -> tuple[bytes, bool]:
        await asyncio.sleep(30)
        return OK, False

    slow = await serve(never)
    http = WebhookClient(0.3, webhook_resolver())
    try:
        with pytest.raises(TimeoutError):
            await http.post(slow.url(), BODY, HEADERS)
        wrong = await serve(always(b"SMTP ready\r\n\r\n"))
        with pytest.raises(WebhookHTTPError, match="Invalid HTTP answer"):
            await http.post(wrong.url(), BODY, HEADERS)
        hangs_up = await serve(always(b"", close=True))
        with pytest.raises(WebhookHTTPError, match="Connection closed before an answer"):
            await http.post(hangs_up.url(), BODY, HEADERS)
    finally:
        await http.close()


async def test_an_answer_late_on_a_kept_connection_times_out_and_the_connection_goes(
    serve: Callable[..., Awaitable[RawReceiver]],
) -> None:
    """Most attempts reuse a kept connection (their deadline a timer of the loop, not
    asyncio.timeout): the attempt still ends at its timeout, and the connection the
    late answer would arrive on is not used again."""
    answered = 0

    async def first_only(_request: bytes) -> tuple[bytes, bool]:
        nonlocal answered
        answered += 1
        if answered == 2:
            await asyncio.sleep(30)
        return OK, False

    receiver = await serve(first_only)
    http = WebhookClient(0.3, webhook_resolver())
    try:
        assert (await http.post(receiver.url(), BODY, HEADERS)).status == 200
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            await http.post(receiver.url(), BODY, HEADERS)  # on the kept connection
        assert 0.25 < time.monotonic() - began < 2
        assert (await http.post(receiver.url(), BODY, HEADERS)).status == 200
        assert receiver.connections == 2  # the late one was closed, a new one opened
    finally:
        await http.close()


async def test_nobody_listening_and_a_forbidden_name(client: WebhookClient) -> None:
    with pytest.raises(WebhookHTTPError, match=r"Cannot connect to host 127\.0\.0\.1:9"):
        await client.post("http://127.0.0.1:9/webhook/whatsapp", BODY, HEADERS)
    with pytest.raises(WebhookHTTPError, match="link-local or reserved"):
        await client.post("http://169.254.169.254/latest", BODY, HEADERS)


async def test_a_tenant_webhook_never_reaches_a_private_address_by_name(
    serve: Callable[..., Awaitable[RawReceiver]],
) -> None:
    receiver = await serve(always(OK))
    http = WebhookClient(2.0, webhook_resolver(Names({"hooks.example": "127.0.0.1"})))
    url = f"http://hooks.example:{receiver.port}/hook"
    refused = r"hooks\.example resolves to a private or loopback address \(127\.0\.0\.1\)"
    try:
        with pytest.raises(WebhookHTTPError, match=refused):
            await http.post(url, BODY, HEADERS, private_ok=False)  # a tenant's webhook
        assert receiver.connections == 0
        assert (await http.post(url, BODY, HEADERS)).status == 200  # the operator's may
        with pytest.raises(WebhookHTTPError, match=refused):  # not on the kept connection
            await http.post(url, BODY, HEADERS, private_ok=False)
        assert receiver.connections == 1 and len(receiver.requests) == 1
    finally:
        await http.close()


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (openssl, as an operator would make one)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_checks_the_certificate(
    serve: Callable[..., Awaitable[RawReceiver]], tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = await serve(always(OK), tls=server_tls)
    url = f"https://localhost:{receiver.port}/webhook/whatsapp"

    untrusted = WebhookClient(2.0, webhook_resolver())  # the system's trusted roots
    trusting = WebhookClient(2.0, webhook_resolver(), tls=ssl.create_default_context(cafile=cert))
    try:
        with pytest.raises(WebhookHTTPError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.post(url, BODY, HEADERS)
        assert (await trusting.post(url, BODY, HEADERS)).status == 200
        assert (await trusting.post(url, BODY, HEADERS)).status == 200
        assert b"Host: localhost:%d" % receiver.port in receiver.requests[-1]
        with pytest.raises(WebhookHTTPError, match="mismatch"):  # the name is checked
            await trusting.post(f"https://127.0.0.1:{receiver.port}/", BODY, HEADERS)
    finally:
        await untrusted.close()
        await trusting.close()


async def test_idle_connections_are_closed_after_a_while(
    serve: Callable[..., Awaitable[RawReceiver]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_client, "KEEP_IDLE_S", 0.2)
    receiver = await serve(always(OK))
    http = WebhookClient(2.0, webhook_resolver())
    try:
        assert (await http.post(receiver.url(), BODY, HEADERS)).status == 200
        await asyncio.sleep(0.1)
        assert receiver.hung_up == 0  # kept while fresh

        async def closed() -> bool:
            return receiver.hung_up == 1

        await wait_for(closed, what="the idle connection closed")
        assert (await http.post(receiver.url(), BODY, HEADERS)).status == 200  # a new one
        assert receiver.connections == 2
    finally:
        await http.close()


async def test_a_path_is_sent_percent_encoded(
    serve: Callable[..., Awaitable[RawReceiver]], client: WebhookClient
) -> None:
    receiver = await serve(always(OK))
    await client.post(receiver.url("/agenda/recepção hook?loja=São Paulo&x=%41"), BODY, HEADERS)
    request_line = receiver.requests[0].split(b"\r\n", 1)[0]
    assert request_line == (
        b"POST /agenda/recep%C3%A7%C3%A3o%20hook?loja=S%C3%A3o%20Paulo&x=%41 HTTP/1.1"
    )
