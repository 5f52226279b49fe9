"""Start N whatsmeow workers (offline, held mid-dial by a silent proxy) and print their
startup time and memory (RSS/PSS from /proc/<pid>/smaps_rollup); fail when the median
PSS is above the target (40 MB). Part of ``make bench``.

    .venv/bin/python scripts/measure_whatsmeow_workers.py [N] [--levers]

``--levers`` measures each memory lever alone and together: neonize's imports
deferred (``engines/whatsmeow/lean.py``; on in production), ``MALLOC_ARENA_MAX``,
``GOGC`` and ``GOMEMLIMIT`` for the Go runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any

from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.engines.whatsmeow.procinfo import memory_kb

TARGET_PSS_MB = 40.0
LEVERS: list[tuple[str, dict[str, Any]]] = [
    ("all imports (before)", {"lean_imports": False}),
    ("imports deferred (production)", {}),
    ("all imports + MALLOC_ARENA_MAX=2", {"lean_imports": False,
                                          "extra_env": {"MALLOC_ARENA_MAX": "2"}}),
    ("all imports + GOGC=50 GOMEMLIMIT=24MiB", {"lean_imports": False,
                                               "extra_env": {"GOGC": "50", "GOMEMLIMIT": "24MiB"}}),
    ("deferred + MALLOC_ARENA_MAX=2 + GOGC=50 GOMEMLIMIT=24MiB",
     {"extra_env": {"MALLOC_ARENA_MAX": "2", "GOGC": "50", "GOMEMLIMIT": "24MiB"}}),
]  # fmt: skip


async def measure(count: int, **options: Any) -> dict[str, float]:
    """Median startup (s) and memory (MB) of ``count`` workers started with ``options``."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    proxy = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    with tempfile.TemporaryDirectory() as auth:
        engine = WhatsmeowEngine(SimpleNamespace(auth_dir=auth), proxy=proxy, **options)

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
    result = {"startup_s": statistics.median(startups)}
    for key in ("Rss", "Pss", "Private_Dirty"):
        result[key] = statistics.median(m[key] for m in mem) / 1024
    return result


def row(name: str, r: dict[str, float]) -> str:
    return (f"| {name} | {r['startup_s']:.2f} | {r['Rss']:.1f} | {r['Pss']:.1f} "
            f"| {r['Private_Dirty']:.1f} |")  # fmt: skip


async def main(count: int, levers: bool) -> int:
    print(f"{count} workers, medians; memory in MB\n")
    print("| workers started with | startup s | RSS | PSS | private dirty |")
    print("|---|---|---|---|---|")
    production = None
    for name, options in LEVERS if levers else [("production defaults", {})]:
        result = await measure(count, **options)
        print(row(name, result), flush=True)
        if not options:
            production = result
    assert production is not None
    met = production["Pss"] <= TARGET_PSS_MB
    print(f"\nPSS {production['Pss']:.1f} MB per worker: target ≤ {TARGET_PSS_MB:g} MB "
          + ("met" if met else "NOT met"))  # fmt: skip
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("count", nargs="?", type=int, default=8)
    parser.add_argument("--levers", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.count, args.levers)))
