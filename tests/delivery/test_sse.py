"""Live events as Server-Sent Events: every tenant's on ``/events``, one tenant's on
``/tenants/{id}/events``; read as a client would, with a streaming HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import httpx

from tests.delivery.conftest import StartNode
from tests.helpers import Receiver, wait_for
from zapmux.api.streams import next_event
from zapmux.hub import Hub


class SseReader:
    """Reads one event stream in the background into ``events`` (parsed envelopes)."""

    def __init__(self, base_url: str, path: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(5, read=30))
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.names: list[str] = []  # the ``event:`` field of each frame
        self.task: asyncio.Task[None] | None = None
        self.content_type = ""

    async def __aenter__(self) -> SseReader:
        self.task = asyncio.create_task(self._read())
        await wait_for(self._has_any, what=f"the first event on {self.path}")
        return self

    async def _has_any(self) -> bool:
        if self.task is not None and self.task.done():
            self.task.result()
        return bool(self.events)

    async def _read(self) -> None:
        async with self.client.stream("GET", self.path) as response:
            assert response.status_code == 200
            self.content_type = response.headers["content-type"]
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    self.names.append(name)
                    self.events.append(json.loads(line[len("data: ") :]))

    async def wait(self, event: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            await self._has_any()
            return next((e for e in self.events if e["event"] == event and check(e)), None)

        return dict(await wait_for(found, what=f"{event} on {self.path}"))

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.client.aclose()


async def test_events_streams(receiver: Receiver, start_node: StartNode) -> None:
    node = await start_node(receiver.url)
    assert (await node.http.post("/tenants", json={"tenantId": "sse1"})).status_code == 201
    async with (
        SseReader(node.url, "/events") as everything,
        SseReader(node.url, "/tenants/sse1/events") as mine,
    ):
        assert everything.content_type.startswith("text/event-stream")
        first = mine.events[0]  # the tenant's state right away, before anything changes
        assert first["event"] == "status" and first["tenant_id"] == "sse1"

        assert (await node.http.post("/tenants", json={"tenantId": "sse2"})).status_code == 201
        qr = await everything.wait("qr", lambda e: e["tenant_id"] == "sse2")
        assert qr["data"]["qr"].startswith("2@")
        scan = await node.http.post(
            "/sandbox/scan", json={"qr": qr["data"]["qr"], "phone": "5511900000002"}
        )
        assert scan.status_code == 200
        await everything.wait(
            "status", lambda e: e["tenant_id"] == "sse2" and e["data"]["status"] == "connected"
        )

        await node.scan("sse1", "5511900000001")
        await mine.wait("status", lambda e: e["data"]["status"] == "connected")
        await node.customer_says("5511977776666", "sse1", "olá SSE")
        message = await mine.wait("message", lambda e: e["data"]["text"] == "olá SSE")
        assert message["data"]["phone"] == "5511977776666"
        await everything.wait("message", lambda e: e["tenant_id"] == "sse1")

        assert (await node.http.delete("/tenants/sse2")).status_code == 200
        gone = await everything.wait("deleted", lambda e: e["tenant_id"] == "sse2")
        assert gone["data"] == {"tenant_id": "sse2"}

        assert {e["tenant_id"] for e in mine.events} == {"sse1"}  # never another tenant's
        assert mine.names == [e["event"] for e in mine.events]


def _waiting_on_the_hub() -> set[asyncio.Task[Any]]:
    """Tasks of this loop parked on an event queue or on the hub's close."""
    return {
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "__qualname__", "") in {"Queue.get", "Event.wait"}
    }


async def test_a_stream_cancelled_while_it_waits_leaves_no_task_behind() -> None:
    """A stream whose client leaves is cancelled while it waits for the next event; the
    two tasks it waits on must go too ("Task was destroyed but it is pending!")."""
    hub = Hub()
    before = _waiting_on_the_hub()
    for _ in range(3):
        queue = hub.subscribe()
        waiting = asyncio.create_task(next_event(queue, hub))
        await asyncio.sleep(0.05)  # parked on the queue and on the hub's close
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        hub.unsubscribe(queue)
    await asyncio.sleep(0.05)
    assert _waiting_on_the_hub() - before == set()
