"""Owned background tasks: each named, its failure logged and kept for ``/status``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("zapmux.tasks")
CANCEL_AGAIN_S = 1.0


class TaskGroup:
    """Holds the server's long-lived tasks; nothing is fired and forgotten."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.failures: list[dict[str, Any]] = []

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("❌ background task %s failed: %r", task.get_name(), exc, exc_info=exc)
        self.failures.append({"task": task.get_name(), "error": repr(exc), "at": time.time()})
        del self.failures[:-20]

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them. A cancel can be lost (on 3.11 a timeout
        that expires as the cancel arrives swallows it): a task still running after a
        second is cancelled again, so a stop never waits forever."""
        tasks = set(self.tasks)
        while tasks:
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=CANCEL_AGAIN_S)
            if tasks:
                names = ", ".join(sorted(t.get_name() for t in tasks))
                log.warning("🔄 task(s) %s still running after a cancel; cancelling again", names)
