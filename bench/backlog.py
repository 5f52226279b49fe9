"""A webhook that is down for hours: its chat's rows pile up in the outbox, and the
deliverer still looks at every pending row now and then. How long do everyone else's
writes wait meanwhile?

A SQLite store holds ``--rows`` rows of one chat behind its head, which is in flight
(the dead webhook's attempt). One task makes the deliverer's look at every pending row
(``finish_and_claim`` without a cursor) again and again; another writes messages, one
every 5 ms, and times each write to its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from zapmux.outbox import new_delivery
from zapmux.store import open_store
from zapmux.store.records import MessageRecord, TenantRecord

RESULTS = Path(__file__).parent / "results"


async def measure(rows: int, writes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="zapmux-backlog-") as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'backlog.db'}")
        await store.migrate()
        await store.create_tenant(TenantRecord(id="t"))
        for first in range(0, rows, 5000):
            await store.enqueue_deliveries(
                [
                    new_delivery(
                        event="message", target="flask", payload={"n": n},
                        chat_key="t:down", tenant_id=None,
                    )
                    for n in range(first, min(first + 5000, rows))
                ]
            )  # fmt: skip
        await store.claim_deliveries(1, lock_s=3600)  # the head, in flight
        looks: list[float] = []
        done = asyncio.Event()

        async def look_again_and_again() -> None:
            while not done.is_set():
                began = time.perf_counter()
                await store.finish_and_claim([], 16, 30.0, None)
                looks.append(time.perf_counter() - began)
                await asyncio.sleep(0.01)

        looking = asyncio.create_task(look_again_and_again())
        waited = []
        for n in range(writes):
            message = MessageRecord(
                tenant_id="t", message_id=f"m{n}", wa_id=None, direction="out", chat="c",
                phone="5511999990000", message_type="texto", text="oi", status="queued",
                timestamp=time.time(),
            )  # fmt: skip
            began = time.perf_counter()
            await store.add_message(message)
            waited.append(time.perf_counter() - began)
            await asyncio.sleep(0.005)
        done.set()
        await looking
        await store.close()
    waited.sort()
    return {
        "rows": rows,
        "look_ms": statistics.mean(looks) * 1000,
        "write_p50_ms": waited[len(waited) // 2] * 1000,
        "write_p99_ms": waited[int(len(waited) * 0.99)] * 1000,
        "write_max_ms": waited[-1] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.rows, args.writes))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backlog.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "backlog.md").write_text(
        "# Writes beside a look through a backlog\n\n"
        f"`python -m bench.backlog` on {platform.platform()}: {args.rows:,} rows of one "
        f"chat behind a webhook that is down; the look at every pending row took "
        f"{result['look_ms']:.0f} ms; meanwhile {args.writes} other writes waited "
        f"p50 {result['write_p50_ms']:.1f} ms, p99 {result['write_p99_ms']:.1f} ms, "
        f"max {result['write_max_ms']:.1f} ms for their commit.\n"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
