"""kill -9 in the middle of a burst of sends: every send that was answered 200/202 goes
out exactly once, or, if the kill caught it while it was being handed to the engine,
ends ``failed`` saying so (docs/sending.md: at most once, never twice); and retrying
every send with its Idempotency-Key afterwards sends nothing twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from tests.helpers import Receiver, wait_for
from tests.process import ServerProcess
from zapmux.store.records import SEND_INTERRUPTED

PHONES = ["5511911120001", "5511911120002", "5511911120003"]
SENDS = 90


async def _send(node: ServerProcess, n: int) -> int | None:
    """The HTTP status of send ``n``, or None when the server died before answering."""
    body = {"phone": PHONES[n % len(PHONES)], "message": f"burst-{n:03d}"}
    try:
        answer = await node.http.post("/send/loja", json=body, headers={"Idempotency-Key": f"b{n}"})
    except httpx.TransportError:
        return None
    return answer.status_code


async def _inbox(node: ServerProcess) -> Counter[str]:
    texts: Counter[str] = Counter()
    for phone in PHONES:
        got = (await node.http.get(f"/sandbox/phones/{phone}/messages")).json()["messages"]
        texts.update(m["text"] for m in got)
    return texts


async def test_kill_9_mid_burst_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Paced (5 at once, then 20 a second): part goes out at once, the rest waits queued.
    node = ServerProcess(
        tmp_path, ZAPMUX_FLASK_URL=receiver.url, ZAPMUX_SEND_RATE_PER_MINUTE="1200"
    )
    try:
        await node.start()
        await node.create_paired("loja", "5511988880000")
        burst = [asyncio.create_task(_send(node, n)) for n in range(SENDS)]
        await wait_for(lambda: _some_answered(burst), what="the first answers")
        await node.kill()
        answered = await asyncio.gather(*burst)
        accepted = {f"burst-{n:03d}" for n, status in enumerate(answered) if status in {200, 202}}
        assert accepted, "nothing was accepted before the kill"

        await node.start()
        retried = await asyncio.gather(*(_send(node, n) for n in range(SENDS)))
        assert all(status in {200, 202} for status in retried), retried

        async def accepted_went_out() -> bool:
            return accepted - await _interrupted(node) <= set(await _inbox(node))

        await wait_for(accepted_went_out, timeout=60, what="every accepted send to go out")
        # One message at a time is handed to the engine (the tenant's lane): the kill
        # can catch at most that one, and it is then failed visibly, not lost.
        interrupted = await _interrupted(node)
        assert len(interrupted) <= 1, interrupted
        await asyncio.sleep(1.0)  # anything that would go out twice has had time to
        twice = {text: count for text, count in (await _inbox(node)).items() if count > 1}
        assert not twice, f"sent twice: {twice}"
    finally:
        await node.close()


async def _interrupted(node: ServerProcess) -> set[str]:
    """The texts of the messages the kill caught while handing them over."""
    log = (await node.http.get("/tenants/loja/messages?status=failed&limit=500")).json()
    return {m["text"] for m in log["messages"] if m["error"] == SEND_INTERRUPTED}


async def _some_answered(burst: list[asyncio.Task[int | None]]) -> bool:
    return sum(task.done() for task in burst) >= 10
