"""What Linux says about a worker process: alive or not, and its memory (from /proc)."""

from __future__ import annotations

import asyncio


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


async def wait_gone(pid: int, within_s: float = 10.0) -> bool:
    """Wait until the process is gone; False if it is still there after ``within_s``."""
    # Polling /proc: the process may not be our child, so there is nothing to await.
    for _ in range(max(1, int(within_s / 0.05))):
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not pid_alive(pid)


def memory_kb(pid: int) -> dict[str, int]:
    """The process's memory totals in kB from ``smaps_rollup`` (``Rss``, ``Pss``, …)."""
    totals: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                totals[parts[0].rstrip(":")] = int(parts[1])
    return totals
