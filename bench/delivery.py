"""Webhook delivery: zapmux's durable deliverer against raw HTTP clients.

Every client posts the same signed payloads to the same local receiver (a separate
process) with the same concurrency. Two scenarios:

- ``burst``: N events are waiting when the client starts; delivered events/s is N
  over the time to the last arrival (latency = arrival − start: queueing included).
- ``steady``: events arrive one at a time at a fixed rate, as incoming messages do;
  latency = arrival − the moment the event was handed over (for zapmux: before the
  outbox INSERT, so the durable write is included).

zapmux's deliverer runs on a real SQLite outbox on disk, in order per chat (events
spread over ``--chats`` chats). The raw clients keep nothing and order nothing: the
difference is the price of "durable, ordered, at least once".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from zapmux.config import Settings
from zapmux.outbox import Deliverer, new_delivery, pinned_target, sign
from zapmux.store import open_store
from zapmux.store.records import Delivery

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-secret"


@dataclass
class Config:
    events: int
    rate: float
    seconds: float
    concurrency: int
    chats: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@dataclass
class Result:
    client: str
    scenario: str
    events: int
    delivered: int
    duplicates: int
    seconds: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def payload(run: str, n: int, chats: int) -> dict[str, Any]:
    """A message webhook as zapmux sends it, plus what the receiver measures with."""
    return {
        "run": run,
        "n": n,
        "enqueued_at": time.time(),
        "phone": f"55119{n % chats:08d}",
        "message": f"mensagem de teste número {n}, com acentuação e um pouco de texto",
        "message_type": "texto",
        "empresa_id": 1,
        "message_id": f"3EB0{n:016X}",
        "timestamp": int(time.time()),
        "push_name": "Cliente",
        "chat": f"55119{n % chats:08d}@s.whatsapp.net",
        "is_group": False,
        "from_me": False,
        "tenant_id": "1",
    }


def signed_headers(body: bytes, n: int) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Zapmux-Delivery": f"bench-{n}",
        "X-Zapmux-Event": "message",
        "X-Zapmux-Timestamp": ts,
        "X-Zapmux-Signature": sign(SECRET, ts, body),
    }


def encode(p: dict[str, Any]) -> bytes:
    return json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode()


# --- the clients ------------------------------------------------------------------
Poster = Callable[[bytes, int], Awaitable[None]]


async def raw_workers(
    cfg: Config, queue: asyncio.Queue[tuple[bytes, int] | None], post: Poster
) -> None:
    async def worker() -> None:
        while (item := await queue.get()) is not None:
            await post(*item)

    await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))


class RawHttpx:
    name = "raw httpx"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        limits = httpx.Limits(
            max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
        )
        self.client = httpx.AsyncClient(limits=limits, timeout=10)

    async def post(self, body: bytes, n: int) -> None:
        response = await self.client.post(
            self.cfg.url, content=body, headers=signed_headers(body, n)
        )
        response.raise_for_status()

    async def aclose(self) -> None:
        await self.client.aclose()


class RawAiohttp:
    name = "raw aiohttp"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.concurrency),
            timeout=aiohttp.ClientTimeout(total=10),
        )

    async def post(self, body: bytes, n: int) -> None:
        async with self.session.post(self.cfg.url, data=body, headers=signed_headers(body, n)) as r:
            await r.read()
            r.raise_for_status()

    async def aclose(self) -> None:
        await self.session.close()


async def run_raw(cfg: Config, client_cls: Any, scenario: str, run: str) -> float:
    """Start time of the run; events go through an in-memory queue to N workers."""
    client = client_cls(cfg)
    queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
    try:
        if scenario == "burst":
            for n in range(cfg.events):
                queue.put_nowait((encode(payload(run, n, cfg.chats)), n))
            started = time.time()
            for _ in range(cfg.concurrency):
                queue.put_nowait(None)
            await raw_workers(cfg, queue, client.post)
            return started
        workers = asyncio.create_task(raw_workers(cfg, queue, client.post))
        started = time.time()
        await paced(cfg, lambda n: _put(queue, encode(payload(run, n, cfg.chats)), n))
        for _ in range(cfg.concurrency):
            queue.put_nowait(None)
        await workers
        return started
    finally:
        await client.aclose()


async def _put(queue: asyncio.Queue[tuple[bytes, int] | None], body: bytes, n: int) -> None:
    queue.put_nowait((body, n))


async def paced(cfg: Config, handover: Callable[[int], Awaitable[None]]) -> int:
    """Hand events over at ``cfg.rate`` per second for ``cfg.seconds`` (open loop)."""
    total = int(cfg.rate * cfg.seconds)
    start = time.monotonic()
    for n in range(total):
        delay = start + n / cfg.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await handover(n)
    return total


async def run_zapmux(cfg: Config, scenario: str, run: str, tmp: Path) -> tuple[float, Deliverer]:
    store = open_store(f"sqlite:///{tmp / f'{run}.db'}")
    await store.migrate()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp,
        delivery_concurrency=cfg.concurrency,
        webhook_secret=SECRET,
    )
    deliverer = Deliverer(settings, store)

    def delivery(n: int) -> Delivery:
        return new_delivery(
            event="message",
            target=pinned_target(cfg.url),
            payload=payload(run, n, cfg.chats),
            chat_key=f"bench:{n % cfg.chats}",
            tenant_id="1",
        )

    task: asyncio.Task[None] | None = None
    try:
        if scenario == "burst":
            for first in range(0, cfg.events, 500):
                last = min(first + 500, cfg.events)
                await store.enqueue_deliveries([delivery(n) for n in range(first, last)])
            started = time.time()
            task = asyncio.create_task(deliverer.run())
            await wait_count(cfg, run, cfg.events)
            return started, deliverer

        async def enqueue(n: int) -> None:  # as the dispatcher does for each message
            await store.enqueue_deliveries([delivery(n)])
            deliverer.queued()

        task = asyncio.create_task(deliverer.run())
        started = time.time()
        total = await paced(cfg, enqueue)
        await wait_count(cfg, run, total)
        return started, deliverer
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()


async def wait_count(cfg: Config, run: str, expected: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            got = (await http.get(f"http://127.0.0.1:{cfg.port}/count/{run}")).json()
            if got["unique"] >= expected:
                return
            await asyncio.sleep(0.1)  # seldom: the poll shares the loop under test
    raise TimeoutError(f"{run}: not every event arrived within {limit_s}s")


# --- measuring --------------------------------------------------------------------
async def measure(cfg: Config, client: str, scenario: str, tmp: Path) -> Result:
    run = f"{client.replace(' ', '-')}-{scenario}-{time.monotonic_ns()}"
    if client == "zapmux":
        started, _ = await run_zapmux(cfg, scenario, run, tmp)
    else:
        cls = RawHttpx if client == "raw httpx" else RawAiohttp
        started = await run_raw(cfg, cls, scenario, run)
    async with httpx.AsyncClient(timeout=30) as http:
        arrivals = (await http.get(f"http://127.0.0.1:{cfg.port}/stats/{run}")).json()["arrivals"]
    return summarize(client, scenario, started, arrivals)


def summarize(client: str, scenario: str, started: float, arrivals: list[list[float]]) -> Result:
    first: dict[int, tuple[float, float]] = {}
    for n, enqueued_at, arrived_at in arrivals:
        first.setdefault(int(n), (enqueued_at, arrived_at))
    base = (lambda e: started) if scenario == "burst" else (lambda e: e)
    latencies = sorted((a - base(e)) * 1000 for e, a in first.values())
    elapsed = max(a for _, a in first.values()) - started
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(
        client=client,
        scenario=scenario,
        events=len(first),
        delivered=len(arrivals),
        duplicates=len(arrivals) - len(first),
        seconds=round(elapsed, 3),
        events_per_s=round(len(first) / elapsed, 1),
        p50_ms=round(q[49], 2),
        p99_ms=round(q[98], 2),
        max_ms=round(latencies[-1], 2),
    )


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", "--port", str(port)],
        cwd=Path(__file__).parent.parent,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/count/ping", timeout=1)
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the benchmark receiver did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_all(cfg: Config, clients: list[str]) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="zapmux-bench-") as tmp:
        for scenario in ("burst", "steady"):
            for client in clients:
                result = await measure(cfg, client, scenario, Path(tmp))
                print(format_row(result), flush=True)
                results.append(result)
    return results


def format_row(r: Result) -> str:
    return (
        f"| {r.scenario} | {r.client} | {r.events} | {r.events_per_s:,.0f} | "
        f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.1f} | {r.duplicates} |"
    )


def write_results(cfg: Config, results: list[Result]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    by = {(r.scenario, r.client): r for r in results}
    ratios = {
        s: round(by[(s, "zapmux")].events_per_s / by[(s, "raw httpx")].events_per_s, 2)
        for s in ("burst", "steady")
        if (s, "zapmux") in by and (s, "raw httpx") in by
    }
    doc = {
        "config": asdict(cfg),
        "machine": machine,
        "results": [asdict(r) for r in results],
        "zapmux_over_httpx_throughput": ratios,
    }
    (RESULTS / "delivery.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Webhook delivery benchmark",
        "",
        f"`python -m bench` on {machine['platform']}, Python {machine['python']}, "
        f"{machine['cpus']} CPUs. Concurrency {cfg.concurrency} for every client; "
        f"burst of {cfg.events} events; steady {cfg.rate:g} events/s for {cfg.seconds:g} s; "
        f"{cfg.chats} chats (zapmux delivers in order per chat).",
        "",
        "| scenario | client | events | events/s | p50 ms | p99 ms | max ms | duplicates |",
        "|---|---|---|---|---|---|---|---|",
        *(format_row(r) for r in results),
        "",
        "Burst latency is arrival − start (queueing included); steady latency is arrival − "
        "hand-over (for zapmux, before the outbox INSERT: the durable write is included).",
        "",
        *(f"zapmux / raw httpx throughput ({s}): **{ratio}×**" for s, ratio in ratios.items()),
        "",
    ]
    (RESULTS / "delivery.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="burst size")
    parser.add_argument("--rate", type=float, default=200.0, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady duration")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chats", type=int, default=64)
    parser.add_argument("--clients", default="zapmux,raw httpx,raw aiohttp")
    parser.add_argument("--quick", action="store_true", help="a few seconds, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.seconds = 500, 2.0
    cfg = Config(args.events, args.rate, args.seconds, args.concurrency, args.chats, free_port())
    receiver = start_receiver(cfg.port)
    try:
        print("| scenario | client | events | events/s | p50 ms | p99 ms | max ms | duplicates |")
        print("|---|---|---|---|---|---|---|---|")
        results = asyncio.run(run_all(cfg, [c.strip() for c in args.clients.split(",")]))
    finally:
        receiver.terminate()
        receiver.wait(10)
    if not args.quick:
        write_results(cfg, results)
        print(f"\nwritten to {RESULTS / 'delivery.json'} and {RESULTS / 'delivery.md'}")
    return 0
