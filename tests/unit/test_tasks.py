"""The server's task group: a stop cancels every task and waits for each to end, even
one that lost its first cancel."""

from __future__ import annotations

import asyncio

from zapmux.tasks import TaskGroup


async def test_a_task_that_swallows_a_cancel_is_cancelled_again() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 1:
                    continue  # lost, as a cancel racing a timeout is on 3.11
                raise

    group = TaskGroup()
    task = group.spawn("stubborn", stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(group.cancel_all(), 10)
    assert task.cancelled() and cancels == 2
    assert group.tasks == set() and group.failures == []


async def test_a_task_that_failed_is_kept_for_status() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    group = TaskGroup()
    group.spawn("broken", broken())
    await asyncio.sleep(0.01)
    await group.cancel_all()
    assert [f["task"] for f in group.failures] == ["broken"]
    assert "boom" in group.failures[0]["error"]
