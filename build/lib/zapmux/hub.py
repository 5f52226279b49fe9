"""In-process fan-out of live events to Server-Sent-Event listeners."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class Hub:
    """Publishes ``{event, tenant_id, timestamp, data}`` envelopes to subscribers."""

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.closed = asyncio.Event()

    def publish(self, event: str, tenant_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
        envelope = {"event": event, "tenant_id": tenant_id, "timestamp": time.time(), "data": data}
        for queue in list(self.subscribers):
            if queue.full():  # a slow listener loses its oldest events, never blocks us
                queue.get_nowait()
            queue.put_nowait(envelope)
        return envelope

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)

    def close(self) -> None:
        """The server is stopping: every stream ends now, not at its next keep-alive."""
        self.closed.set()
