"""uvicorn's HTTP/1.1 protocol (httptools), with each answer sent in one write.

uvicorn writes a response's status line and headers as soon as the app starts the
response, then its body: two ``send()`` calls, two TCP segments, and a client woken
twice, for every answer of a few hundred bytes (a send's 202, a phone's 201). On
loopback a ``send()`` also runs the receiving side's TCP work in the sender's thread.
Measured on the inbound harness (issue 10): writing answers went from 9.8% to 6.6% of
the server's py-spy samples, and the phones' client took ~5% less CPU a message.
Here the connection's transport holds what is written during one turn of the event
loop and writes it at the end of that turn, in one call: a head and a body written
together (as every response with a body in one message is) leave together; a
stream's chunks still leave at the end of the turn each is written in.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWriteProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` writing through :class:`TurnTransport` (the config's
    ``http=``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # its addresses and flow control: the socket's
        self.transport = TurnTransport(transport)  # type: ignore[assignment]


class TurnTransport:
    """A transport whose writes of one event-loop turn go out together, at its end.

    Closing (or ending the write side) sends what is held first; aborting drops it,
    as aborting a transport drops its buffer. Anything else is the socket's transport.
    """

    __slots__ = ("held", "loop", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: list[bytes] = []
        self.loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.held:
            self.loop.call_soon(self.flush)
        self.held.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held, self.held = self.held, []
        if held and not self.transport.is_closing():
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self.held))

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.held = []
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
