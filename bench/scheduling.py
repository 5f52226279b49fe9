"""Scheduled sends: how late they go out, on one node, for many tenants at once.

A zapmux server (sandbox engine, SQLite store on disk, pacing off) runs in this
process with ``--tenants`` paired tenants. Each tenant schedules ``--per-tenant``
reminders over ``--spread`` seconds starting a few seconds ahead (one wave all at the
same second, the rest spread out); lateness is the sandbox phone's ``received_at``
minus ``send_at``. One timer serves the whole node, so this measures the timer, the
release into each tenant's queue, and the queue's send, together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from zapmux.api.app import create_app
from zapmux.config import Settings
from zapmux.gateway import Gateway

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def pair(http: httpx.AsyncClient, tenant_id: str, phone: str) -> None:
    assert (await http.post("/tenants", json={"tenantId": tenant_id})).status_code == 201
    for _ in range(200):
        qr = (await http.get(f"/tenants/{tenant_id}/qr")).json().get("qr")
        if qr:
            break
        await asyncio.sleep(0.05)
    scan = await http.post("/sandbox/scan", json={"qr": qr, "phone": phone})
    assert scan.status_code == 200, scan.text
    for _ in range(200):
        if (await http.get(f"/tenants/{tenant_id}/status")).json()["status"] == "connected":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{tenant_id} did not connect")


async def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    port = free_port()
    settings = Settings(
        _env_file=None, engine="sandbox", port=port, data_dir=data / "data",
        auth_dir=data / "auth", send_rate_per_minute=0, flask_url="http://127.0.0.1:9",
    )  # type: ignore[call-arg]  # fmt: skip
    gateway = Gateway(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, gateway), port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        tenants = [f"t{n}" for n in range(args.tenants)]
        for n, tenant in enumerate(tenants):
            await pair(http, tenant, f"55119{n:08d}")
        start = time.time() + args.lead
        due: dict[str, float] = {}
        gate = asyncio.Semaphore(16)

        async def schedule(n: int, tenant: str, k: int) -> None:
            send_at = start if k == 0 else start + args.spread * k / args.per_tenant
            body = {"phone": f"55118{n:04d}{k:04d}", "message": f"lembrete {k}", "send_at": send_at}
            async with gate:
                answer = await http.post(f"/tenants/{tenant}/send", json=body)
            assert answer.status_code == 202, answer.text
            due[answer.json()["message_id"]] = send_at

        await asyncio.gather(
            *(schedule(n, t, k) for n, t in enumerate(tenants) for k in range(args.per_tenant))
        )
        scheduled_by = time.time()
        if scheduled_by >= start:
            raise SystemExit(f"scheduling took longer than --lead {args.lead:g} s: raise it")
        lateness = await wait_all(gateway, due, start + args.spread + 60)
    server.should_exit = True
    await task
    return summary(args, lateness, len(due), scheduled_by - (start - args.lead), start)


async def wait_all(gateway: Gateway, due: dict[str, float], deadline: float) -> list[float]:
    """Lateness of every message once all arrived (the sandbox keeps each phone's inbox)."""
    from zapmux.store import schema as t

    while time.time() < deadline:
        async with gateway.store.engine.connect() as conn:  # type: ignore[attr-defined]
            rows = (await conn.execute(t.sandbox_inbox.select())).all()
        if len(rows) >= len(due):
            return sorted(r.received_at - due[r.message_id] for r in rows)
        await asyncio.sleep(0.5)
    raise RuntimeError("not every scheduled send arrived")


def summary(
    args: argparse.Namespace, lateness: list[float], count: int, accept_s: float, start: float
) -> dict[str, Any]:
    def ms(q: float) -> float:
        return round(lateness[min(len(lateness) - 1, int(q * len(lateness)))] * 1000, 1)

    return {
        "config": {k: getattr(args, k) for k in ("tenants", "per_tenant", "spread", "lead")},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],  # a shared machine
        },
        "messages": count,
        "accept_s": round(accept_s, 2),
        "early": sum(1 for x in lateness if x < 0),
        "lateness_ms": {
            "min": round(lateness[0] * 1000, 1),
            "p50": ms(0.5),
            "p99": ms(0.99),
            "max": round(lateness[-1] * 1000, 1),
            "mean": round(statistics.fmean(lateness) * 1000, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduling", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--per-tenant", type=int, default=4)
    parser.add_argument("--spread", type=float, default=10.0, help="seconds the sends span")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds before the first")
    parser.add_argument("--quick", action="store_true", help="a few tenants, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.tenants, args.per_tenant, args.spread, args.lead = 3, 4, 2.0, 2.0
    with tempfile.TemporaryDirectory() as data:
        result = asyncio.run(run(args, Path(data)))
    print(json.dumps(result, indent=2))
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "scheduling.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
