"""Start N whatsmeow workers (offline, held mid-dial by a silent proxy) and print their
startup time and memory (RSS/PSS from /proc/<pid>/smaps_rollup).

    .venv/bin/python scripts/measure_whatsmeow_workers.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.engines.whatsmeow.procinfo import memory_kb


async def main(count: int) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    proxy = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    with tempfile.TemporaryDirectory() as auth:
        engine = WhatsmeowEngine(SimpleNamespace(auth_dir=auth), proxy=proxy)

        async def sink(event: object) -> None:
            print("event:", event)

        startups, pids = [], []
        for n in range(count):
            session = engine.open_session(f"t{n}", sink)
            started = time.monotonic()
            await session.connect()
            startups.append(time.monotonic() - started)
            pids.append(session.worker_pid)
        await asyncio.sleep(2)
        mem = [memory_kb(pid) for pid in pids if pid]
        await engine.aclose()
    server.close()
    print(f"workers: {count}")
    print(f"startup s: median {statistics.median(startups):.2f}, max {max(startups):.2f}")
    for key in ("Rss", "Pss", "Private_Dirty", "Private_Clean"):
        values = [m[key] / 1024 for m in mem]
        print(f"{key} MB per worker: median {statistics.median(values):.1f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
