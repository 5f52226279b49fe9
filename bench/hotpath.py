"""The hot path: sends, inbound, start-up and idle, each beside its baseline, in one run.

- ``send``: ``wrk`` posts ``POST /send/{id}`` round-robin over paired sandbox
  tenants (pacing off) to a real ``zapmux serve``; the baseline is ``bench.bare``, a
  raw ASGI app on the same uvicorn doing one durable INSERT + COMMIT per request
  (one aiosqlite connection on SQLite, an asyncpg pool on PostgreSQL).
- ``inbound``: phones post ``POST /sandbox/messages``; we count what reaches the
  webhook receiver (a separate aiohttp process). The baseline is raw aiohttp posting
  the same number of bodies to that receiver with the same concurrency. A first round
  of each warms up and is not counted (``WARMUP``).
- ``latency``: the same phones, on SQLite and (with ``--pg``) PostgreSQL: how long after
  a phone's 201 (zapmux has recorded the message) its webhook arrives, at the rate the
  phones manage (PostgreSQL's webhooks once fell seconds behind them).
- ``start``: a store holding N paired sandbox tenants; time from spawning ``zapmux
  serve`` to ``/health`` 200, and to every tenant connected; RSS per tenant.
- ``idle``: those N tenants connected and doing nothing: CPU of the server process
  over a window, and how long ``GET /status`` and ``GET /tenants`` take.

Every number is from one run on one machine; read the ratios, not the absolutes. Each
round of send and inbound, zapmux's and the baseline's, starts once the whole machine
is quiet (``machine_quiet``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from bench.delivery import RESULTS, free_port, start_receiver
from zapmux.store import open_store
from zapmux.store.records import SandboxSession, TenantRecord

ROOT = Path(__file__).parent.parent
LUA = """
counter = 0
request = function()
  counter = counter + 1
  local path = "/send/bench" .. (counter %% %(tenants)d)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, %(body)s)
end
"""
#: Inbound: rounds of each (zapmux's, the baseline's) run first and not counted. The
#: first round of either was often the slowest of the run, the baseline's too (a new
#: server's first messages, the receiver's first run, the machine coming up to speed).
WARMUP = 1
#: Latency: the phones' messages, on each store.
LATENCY_MESSAGES = 4000
SEND_BODY = '{"phone": "5511999990000", "message": "Olá! Seu pedido saiu para entrega."}'


@dataclass
class Row:
    scenario: str
    store: str
    what: str
    value: float
    unit: str
    baseline: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return round(self.value / self.baseline, 3) if self.baseline else None


@dataclass
class Options:
    seconds: float
    tenants: int
    start_tenants: int
    inbound: int
    concurrency: int
    pg_url: str | None
    rounds: int = 3
    #: Inbound's rounds are short (2,000 messages: the baseline's take 0.2 s) and swing
    #: with this machine's noise: the median of five moves less than that of three.
    inbound_rounds: int = 5
    rows: list[Row] = field(default_factory=list)


# --- processes ----------------------------------------------------------------------
class Server:
    """A ``zapmux serve`` (or the bare app) in its own process."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ["BENCH_STDERR"], "a")
            if os.environ.get("BENCH_STDERR")
            else subprocess.DEVNULL,
        )

    async def wait_health(self, path: str = "/health", limit_s: float = 120) -> float:
        """Seconds from spawn to a 200 on ``path``."""
        deadline = time.monotonic() + limit_s
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(self.url + path)).status_code == 200:
                        return time.monotonic() - self.started
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.proc.args} exited with {self.proc.returncode}")
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.url}{path} did not answer within {limit_s}s")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def quiet(self, limit_s: float = 60) -> None:
        """Wait until the process is idle (under 5% of a core over half a second)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = self.cpu_s()
            await asyncio.sleep(0.5)
            if self.cpu_s() - before < 0.025:
                return

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def zapmux_server(data: Path, store_url: str, flask_url: str, under: Sequence[str] = ()) -> Server:
    """``zapmux serve`` for the bench (``under``: a command it runs under, as valgrind)."""
    port = free_port()
    env = {
        "ZAPMUX_ENGINE": "sandbox",
        "ZAPMUX_PORT": str(port),
        "ZAPMUX_DATA_DIR": str(data),
        "ZAPMUX_AUTH_DIR": str(data / "auth"),
        "ZAPMUX_DATABASE_URL": store_url,
        "ZAPMUX_FLASK_URL": flask_url,
        "ZAPMUX_SEND_RATE_PER_MINUTE": "0",
        "ZAPMUX_SEND_QUEUE_MAX": "1000000",
        "ZAPMUX_LOG_LEVEL": "WARNING",
        "ZAPMUX_START_CONCURRENCY": "64",
    }
    return Server([*under, str(Path(sys.executable).parent / "zapmux"), "serve"], env, port)


def bare_server(target: str) -> Server:
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return Server(argv, {"BARE_DATABASE": target}, port)


async def seed(store_url: str, tenants: int) -> None:
    """A store holding ``tenants`` paired sandbox tenants (as after pairing each)."""
    store = open_store(store_url)
    await store.migrate()
    now = time.time()

    async def one(n: int) -> None:
        tenant_id = f"bench{n}"
        await store.create_tenant(TenantRecord(id=tenant_id, status="stopped"))
        await store.sandbox_save_session(
            SandboxSession(tenant_id, f"55119{n:08d}", f"Loja {n}", now)
        )

    for first in range(0, tenants, 200):
        await asyncio.gather(*(one(n) for n in range(first, min(first + 200, tenants))))
    await store.close()


async def reset_pg(url: str) -> None:
    """Empty the benchmark's PostgreSQL database (every table of it)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def wait_connected(server: Server, tenants: int, limit_s: float = 300) -> float:
    """Seconds from spawn until every tenant is connected (asked once a second)."""
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                counts = (await http.get(server.url + "/status")).json()["tenants"]
                if counts.get("connected", 0) >= tenants:
                    return time.monotonic() - server.started
            await asyncio.sleep(1.0)
    raise TimeoutError(f"not every tenant connected within {limit_s}s")


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine, from /proc/stat; time waiting for the
    disk counts as busy (a database flushing its writes is not a quiet machine)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3], sum(fields)


async def machine_quiet(limit_s: float = 60, idle: float = 0.85) -> None:
    """Wait until the whole machine is idle (``idle`` of its CPU time over half a
    second, neither computing nor waiting for the disk): what an earlier scenario left
    running (PostgreSQL's checkpoint of the send scenario's writes, its autovacuum) is
    not counted against the next one."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        idle0, total0 = _cpu_times()
        await asyncio.sleep(0.5)
        idle1, total1 = _cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= idle:
            return


# --- scenarios ------------------------------------------------------------------------
def wrk(url: str, tenants: int, seconds: float, tmp: Path) -> tuple[float, int]:
    """(requests/s, non-2xx answers) of ``wrk -t2 -c32`` posting sends."""
    script = tmp / "send.lua"
    script.write_text(LUA % {"tenants": tenants, "body": f"[[{SEND_BODY}]]"})
    done = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if done.stderr.strip():
        raise RuntimeError(f"wrk: {done.stderr.strip()}")
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(bad.group(1)) if bad else 0


async def send_scenario(opts: Options, store: str, url: str, tmp: Path) -> None:
    """zapmux and the bare app side by side, measured in turns (``opts.rounds``); the
    median of each."""
    data = tmp / f"send-{store}"
    await seed(url, opts.tenants)
    server = zapmux_server(data, url, "http://127.0.0.1:9")
    bare = bare_server(url if store == "postgresql" else str(tmp / "bare.db"))
    zapmux, baseline, bad = [], [], 0
    try:
        await server.wait_health()
        await wait_connected(server, opts.tenants)
        await _wait_port(bare)
        for _ in range(opts.rounds):
            await machine_quiet()
            rate, wrong = wrk(server.url, opts.tenants, opts.seconds, tmp)
            zapmux.append(rate)
            bad += wrong
            await server.quiet()  # its receipts and webhooks done: the baseline runs alone
            await machine_quiet()
            baseline.append(wrk(bare.url, opts.tenants, opts.seconds, tmp)[0])
    finally:
        server.stop()
        bare.stop()
    note = _spread(zapmux, baseline) + (f"; {bad} non-2xx" if bad else "")
    opts.rows.append(
        Row("send", store, "POST /send/{id}", statistics.median(zapmux), "req/s",
            statistics.median(baseline), note)
    )  # fmt: skip


def _spread(zapmux: list[float], baseline: list[float]) -> str:
    """Each round's figures, for the reader to see how much they moved."""
    if len(zapmux) < 2:
        return ""
    return (
        f"rounds: {' / '.join(f'{z:,.0f}' for z in zapmux)} vs "
        f"{' / '.join(f'{b:,.0f}' for b in baseline)}"
    )


async def _wait_port(server: Server, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the bare app did not listen")


async def post_all(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    answered: Callable[[bytes], None] | None = None,
) -> float:
    """Post every body with ``concurrency`` workers; the seconds it took. ``answered``
    is handed each answer's body as it arrives."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url, data=body, headers=headers) as response:
                    content = await response.read()
                    response.raise_for_status()
                    if answered is not None:
                        answered(content)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started


def phone_bodies(n: int, tenants: int, tag: str) -> list[bytes]:
    """``n`` phones' messages (500 customers) to the paired tenants, in turn."""
    return [
        json.dumps({"from": f"55119{i % 500:08d}", "tenant_id": f"bench{i % tenants}",
                    "text": f"mensagem {tag}{i}"}).encode()
        for i in range(n)
    ]  # fmt: skip


async def arrived(http: aiohttp.ClientSession, receiver: str, run: str) -> int:
    """How many distinct messages of ``run`` reached the receiver. One session for the
    whole scenario: a new client per poll (httpx's loads the system's certificates
    each time) cost ~45 ms of CPU a poll, most of a core of this 2-core machine taken
    from the server under test while the baseline polls nothing."""
    async with http.get(f"{receiver}/count/{run}") as response:
        return int((await response.json())["unique"])


async def inbound_scenario(opts: Options, receiver: str, tmp: Path) -> None:
    """Rounds of ``opts.inbound`` messages, each followed by raw aiohttp posting as many
    to the same receiver; the median of each."""
    n, run = opts.inbound, f"inbound-{time.monotonic_ns()}"
    url = f"sqlite:///{tmp / 'inbound.db'}"
    await seed(url, opts.tenants)
    server = zapmux_server(tmp / "inbound", url, f"{receiver}/r/{run}")
    zapmux, baseline = [], []
    poll = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        await server.wait_health()
        await wait_connected(server, opts.tenants)
        for round_ in range(WARMUP + opts.inbound_rounds):
            bodies = phone_bodies(n, opts.tenants, f"{round_}.")
            await machine_quiet()
            started = time.monotonic()
            await post_all(server.url + "/sandbox/messages", bodies, opts.concurrency)
            while (got := await arrived(poll, receiver, run)) < n * (round_ + 1):
                if time.monotonic() - started > 300:
                    raise TimeoutError(f"only {got} of {n} messages reached the webhook")
                await asyncio.sleep(0.01)
            zapmux.append(n / (time.monotonic() - started))
            await server.quiet()
            await machine_quiet()
            raw_run = f"raw-{run}-{round_}"
            bodies = [
                json.dumps({"message_id": f"raw{i}", "message": f"mensagem {i}"}).encode()
                for i in range(n)
            ]
            raw_url = f"{receiver}/r/{raw_run}/webhook/whatsapp"
            baseline.append(n / await post_all(raw_url, bodies, opts.concurrency))
    finally:
        await poll.close()
        server.stop()
    warm = f"; not counted, the warm-up: {zapmux[0]:,.0f} vs {baseline[0]:,.0f}" if WARMUP else ""
    zapmux, baseline = zapmux[WARMUP:], baseline[WARMUP:]
    opts.rows.append(
        Row("inbound", "sqlite", "delivered to the webhook", statistics.median(zapmux), "msg/s",
            statistics.median(baseline), _spread(zapmux, baseline) + warm)
    )  # fmt: skip


async def latency_scenario(opts: Options, store: str, url: str, receiver: str, tmp: Path) -> None:
    """``LATENCY_MESSAGES`` phones' messages at ``opts.concurrency``: per message, its
    webhook's arrival after the phone's 201; the rate the phones posted at."""
    run = f"latency-{store}-{time.monotonic_ns()}"
    await seed(url, opts.tenants)
    server = zapmux_server(tmp / f"latency-{store}", url, f"{receiver}/r/{run}")
    answered: dict[str, float] = {}
    try:
        await server.wait_health()
        await wait_connected(server, opts.tenants)
        await machine_quiet()
        bodies = phone_bodies(LATENCY_MESSAGES, opts.tenants, "")

        def took(content: bytes) -> None:
            answered[json.loads(content)["message_id"]] = time.time()

        url_in = server.url + "/sandbox/messages"
        posted = LATENCY_MESSAGES / await post_all(url_in, bodies, opts.concurrency, took)
        async with aiohttp.ClientSession() as http:
            arrived: dict[str, float] = {}
            deadline = time.monotonic() + 120
            while len(arrived) < LATENCY_MESSAGES and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                async with http.get(f"{receiver}/stats/{run}") as response:
                    for key, _, at in (await response.json())["arrivals"]:
                        arrived.setdefault(key, at)
    finally:
        server.stop()
    ms = sorted(1000 * (arrived[k] - at) for k, at in answered.items() if k in arrived)
    missing = LATENCY_MESSAGES - len(ms)
    note = (f"p99 {_pct(ms, 0.99):.1f} ms, max {ms[-1]:.1f} ms, over 200 ms: "
            f"{sum(1 for v in ms if v > 200)}; phones posted {posted:,.0f} msg/s"
            + (f"; {missing} never arrived" if missing else ""))  # fmt: skip
    opts.rows.append(Row("latency", store, "webhook after the phone's 201, p50",
                         _pct(ms, 0.5), "ms", None, note))  # fmt: skip


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))]


async def start_and_idle(opts: Options, tmp: Path) -> None:
    n = opts.start_tenants
    empty = zapmux_server(tmp / "empty", f"sqlite:///{tmp / 'empty.db'}", "http://127.0.0.1:9")
    try:
        bare_start = await empty.wait_health()
        await asyncio.sleep(1.0)
        empty_rss = empty.rss_kb()
    finally:
        empty.stop()
    opts.rows.append(Row("start", "sqlite", "/health 200 (no tenant)", bare_start, "s"))
    url = f"sqlite:///{tmp / 'start.db'}"
    await seed(url, n)
    server = zapmux_server(tmp / "start", url, "http://127.0.0.1:9")
    try:
        health = await server.wait_health()
        connected = await wait_connected(server, n)
        opts.rows.append(Row("start", "sqlite", f"/health 200 ({n} tenants)", health, "s"))
        opts.rows.append(Row("start", "sqlite", f"all {n} connected", connected, "s"))
        per_tenant = (server.rss_kb() - empty_rss) / n
        opts.rows.append(Row("start", "sqlite", "RSS per paired tenant", per_tenant, "KB"))
        await asyncio.sleep(2.0)  # let the start settle
        cpu0, wall0 = server.cpu_s(), time.monotonic()
        await asyncio.sleep(opts.seconds)
        busy = (server.cpu_s() - cpu0) / (time.monotonic() - wall0) * 100
        opts.rows.append(Row("idle", "sqlite", f"CPU, {n} idle tenants", busy, "% of a core"))
        for path in ("/status", "/tenants", "/status?limit=100", "/tenants?limit=100"):
            opts.rows.append(
                Row("idle", "sqlite", f"GET {path}", await _median_ms(server.url + path), "ms")
            )
    finally:
        server.stop()


async def _median_ms(url: str, times: int = 5) -> float:
    spent = []
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(times):
            began = time.perf_counter()
            (await http.get(url)).raise_for_status()
            spent.append((time.perf_counter() - began) * 1000)
    return statistics.median(spent)


# --- the run ----------------------------------------------------------------------------
async def run(opts: Options, scenarios: set[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="zapmux-hotpath-") as raw:
        tmp = Path(raw)
        port = free_port()
        receiver = start_receiver(port)
        try:
            if "send" in scenarios:
                await send_scenario(opts, "sqlite", f"sqlite:///{tmp / 'send.db'}", tmp)
                if opts.pg_url:
                    await reset_pg(opts.pg_url)
                    await send_scenario(opts, "postgresql", opts.pg_url, tmp)
                    await reset_pg(opts.pg_url)
            if "inbound" in scenarios:
                await inbound_scenario(opts, f"http://127.0.0.1:{port}", tmp)
            if "latency" in scenarios:
                receiver_url = f"http://127.0.0.1:{port}"
                await latency_scenario(
                    opts, "sqlite", f"sqlite:///{tmp / 'latency.db'}", receiver_url, tmp
                )
                if opts.pg_url:
                    await reset_pg(opts.pg_url)
                    await latency_scenario(opts, "postgresql", opts.pg_url, receiver_url, tmp)
                    await reset_pg(opts.pg_url)
            if scenarios & {"start", "idle"}:
                await start_and_idle(opts, tmp)
        finally:
            receiver.terminate()
            receiver.wait(10)


def load() -> str:
    """What else ran on the machine: the 1-minute load average and the CPU count."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def write(opts: Options, before: str, after: str) -> None:
    lines = [
        "# Hot-path benchmark",
        "",
        f"`python -m bench hotpath` on {platform.platform()}, Python "
        f"{platform.python_version()}; load before the run: {before}, after: {after}. "
        f"Sandbox engine, pacing off; send: `wrk -t2 -c32 -d{opts.seconds:g}s` over "
        f"{opts.tenants} paired tenants; inbound: {opts.inbound} messages posted with "
        f"concurrency {opts.concurrency}; start/idle: {opts.start_tenants} paired tenants. "
        f"Send: {opts.rounds} rounds, inbound: {opts.inbound_rounds}, zapmux and its "
        "baseline in turns, each "
        f"once the machine is quiet (inbound after {WARMUP} warm-up round of each, not "
        "counted); the table shows the median of each (the note, every round).",
        "",
        "| scenario | store | what | zapmux | baseline | ratio | note |",
        "|---|---|---|---|---|---|---|",
        *(_line(r) for r in opts.rows),
        "",
        "Baselines: send — `bench.bare`, a raw ASGI app on the same uvicorn doing one "
        "INSERT + COMMIT per request; inbound — raw aiohttp posting to the same receiver.",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hotpath.md").write_text("\n".join(lines))
    doc = {"rows": [{**r.__dict__, "ratio": r.ratio} for r in opts.rows], "load": [before, after]}
    (RESULTS / "hotpath.json").write_text(json.dumps(doc, indent=2) + "\n")


def _line(r: Row) -> str:
    base = f"{r.baseline:,.0f} {r.unit}" if r.baseline else "–"
    ratio = f"**{r.ratio}**" if r.ratio is not None else "–"
    return f"| {r.scenario} | {r.store} | {r.what} | {r.value:,.2f} {r.unit} | {base} | {ratio} | {r.note} |"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench hotpath", description=__doc__)
    parser.add_argument("--scenarios", default="send,inbound,latency,start,idle")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--start-tenants", type=int, default=1000)
    parser.add_argument("--inbound", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="send: turns of zapmux and baseline")
    parser.add_argument(
        "--inbound-rounds", type=int, default=5, help="inbound: turns of zapmux and baseline"
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get("ZAPMUX_BENCH_DATABASE_URL"),
        help="a PostgreSQL database the bench may empty (else the send runs on SQLite only)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None and "send" in args.scenarios:
        print("the send scenario needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    opts = Options(
        args.seconds,
        args.tenants,
        args.start_tenants,
        args.inbound,
        args.concurrency,
        args.pg,
        args.rounds,
        args.inbound_rounds,
    )
    before = load()
    asyncio.run(run(opts, {s.strip() for s in args.scenarios.split(",")}))
    after = load()
    print("\n".join(_line(r) for r in opts.rows))
    write(opts, before, after)
    print(f"\nwritten to {RESULTS / 'hotpath.md'}")
    return 0
