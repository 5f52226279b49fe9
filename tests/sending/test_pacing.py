"""Pacing: over the token bucket messages wait in the queue, they are not refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.helpers import Receiver
from tests.sending.steps import paced_server, send, wait_inbox


async def test_six_sends_at_two_a_second_take_their_time_in_order(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with paced_server(tmp_path, receiver.url, 120, 2) as server:
        started = time.monotonic()
        answers = [await send(server, "acme", "5511933330001", f"m{n}") for n in range(6)]
        assert [a.status_code for a in answers] == [200, 200, 202, 202, 202, 202]
        assert [a.json()["status"] for a in answers[2:]] == ["queued"] * 4
        phone = await wait_inbox(server, "5511933330001", 6)
        elapsed = time.monotonic() - started
        assert elapsed >= 1.5, elapsed
        assert [m["text"] for m in phone] == [f"m{n}" for n in range(6)]
        assert [m["message_id"] for m in phone] == [a.json()["message_id"] for a in answers]


async def test_rate_zero_means_no_pacing(tmp_path: Path, receiver: Receiver) -> None:
    async with paced_server(tmp_path, receiver.url, 0, 1) as server:
        answers = [await send(server, "acme", "5511933330002", f"m{n}") for n in range(10)]
        assert {a.status_code for a in answers} == {200}


async def test_direct_sends_never_overtake_the_queue(tmp_path: Path, receiver: Receiver) -> None:
    """While the queue drains, new sends mix direct and queued paths: order holds."""
    async with paced_server(tmp_path, receiver.url, 1200, 1) as server:
        answers = []
        for n in range(30):
            answers.append(await send(server, "acme", "5511933330003", f"m{n}"))
            await asyncio.sleep(0.003 * (n % 20))  # let the bucket refill now and then
        assert {a.status_code for a in answers} == {200, 202}  # both paths were taken
        phone = await wait_inbox(server, "5511933330003", 30)
        assert [m["text"] for m in phone] == [f"m{n}" for n in range(30)]
