"""Each answer leaves the server in one write (``api/protocol.py``): its status line,
headers and body reach the client as one TCP segment, on a kept-alive connection and on
one the client closes; read off the client's socket (Linux ``TCP_INFO``)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from urllib.parse import urlsplit

from tests.helpers import LiveServer

#: ``struct tcp_info``: ``tcpi_data_segs_in`` (segments that carried data, Linux 4.6+).
DATA_SEGS_IN = 152


def data_segments_in(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", raw, DATA_SEGS_IN)[0])


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole answer (status, body), read by its Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(": ") for h in lines) if k == "content-length")
    return int(lines[0].split()[1]), await reader.readexactly(length)


def request(method: str, path: str, body: object = None, close: bool = False) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: zapmux\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + data


async def test_every_answer_arrives_as_one_segment(server: LiveServer) -> None:
    await server.create_paired("one")
    port = urlsplit(server.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    phone = {"from": "5511955554444", "tenant_id": "one", "text": "oi"}
    asked = [
        ("GET", "/health", None, 200),  # a route of the whole stack
        ("POST", "/sandbox/messages", phone, 201),  # the front door's (api/hot.py)
        ("GET", "/tenants/nobody/status", None, 404),  # an error answer
    ]
    try:
        for n, (method, path, body, status) in enumerate(asked, start=1):
            writer.write(request(method, path, body))
            got, content = await answer(reader)
            assert (got, bool(content)) == (status, True)
            assert data_segments_in(sock) == n  # head and body together, every time
    finally:
        writer.close()


async def test_an_answer_before_the_server_closes_arrives_whole(server: LiveServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(server.url).port)
    sock = writer.get_extra_info("socket")
    try:
        writer.write(request("GET", "/health", close=True))
        status, content = await answer(reader)
        assert status == 200 and json.loads(content)["status"]
        assert await reader.read() == b""  # then the server closed the connection
        assert data_segments_in(sock) == 1
    finally:
        writer.close()
