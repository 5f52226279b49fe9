"""Owned background tasks: each named, its failure logged and kept for ``/status``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("zapmux.tasks")


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
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
