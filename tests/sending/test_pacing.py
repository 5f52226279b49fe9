"""Pacing: over the token bucket messages wait in the queue, they are not refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import LiveServer, Receiver
from tests.sending.steps import send, wait_inbox


async def test_six_sends_at_two_a_second_take_their_time_in_order(
    settings_for: Any, receiver: Receiver
) -> None:
    settings = settings_for(flask_url=receiver.url, send_rate_per_minute=120, send_burst=2)
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        started = time.monotonic()
        answers = [await send(server, "acme", "5511933330001", f"m{n}") for n in range(6)]
        assert [a.status_code for a in answers] == [200, 200, 202, 202, 202, 202]
        assert [a.json()["status"] for a in answers[2:]] == ["queued"] * 4
        phone = await wait_inbox(server, "5511933330001", 6)
        elapsed = time.monotonic() - started
        assert elapsed >= 1.5, elapsed
        assert [m["text"] for m in phone] == [f"m{n}" for n in range(6)]
        assert [m["message_id"] for m in phone] == [a.json()["message_id"] for a in answers]


async def test_rate_zero_means_no_pacing(settings_for: Any, receiver: Receiver) -> None:
    settings = settings_for(flask_url=receiver.url, send_rate_per_minute=0, send_burst=1)
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        answers = [await send(server, "acme", "5511933330002", f"m{n}") for n in range(10)]
        assert {a.status_code for a in answers} == {200}


async def test_direct_sends_never_overtake_the_queue(settings_for: Any, receiver: Receiver) -> None:
    """While the queue drains, new sends mix direct and queued paths: order holds."""
    settings = settings_for(flask_url=receiver.url, send_rate_per_minute=1200, send_burst=1)
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        answers = []
        for n in range(30):
            answers.append(await send(server, "acme", "5511933330003", f"m{n}"))
            await asyncio.sleep(0.003 * (n % 20))  # let the bucket refill now and then
        assert {a.status_code for a in answers} == {200, 202}  # both paths were taken
        phone = await wait_inbox(server, "5511933330003", 30)
        assert [m["text"] for m in phone] == [f"m{n}" for n in range(30)]
