"""Instructions per inbound message: a measure of a change that this machine's noise
does not move.

CPU time for the same work swings by ±15% from minute to minute on a shared virtual
machine, so alternating timed runs cannot see a change of a few percent. Instructions
can: ``zapmux serve`` runs under ``valgrind --tool=callgrind`` (the phones' client and
the webhook receiver outside it, as in ``bench hotpath``'s inbound), once with
``--small`` phones' messages and once with ``--large``, each run until every message
reached the webhook; the difference of their totals over the difference of the counts
is what one more message costs the server, start-up and idle time cancelled out. It
repeats within ~3% (the group commit's batches still vary a little). A run takes a
minute or two (valgrind runs the server some fifty times slower).

``python -m bench.instructions [--small 100] [--large 900]``; needs ``valgrind``
(``apt-get install valgrind``). Compare two versions by running it in each checkout;
``callgrind_annotate`` on the files it names shows where the instructions went, by C
function (``libpython``'s share is the Python).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.delivery import free_port, start_receiver
from bench.hotpath import arrived, phone_bodies, post_all, seed, zapmux_server

TENANTS = 20
CONCURRENCY = 16


async def server_instructions(messages: int, out: Path, tmp: Path) -> int:
    """The instructions ``zapmux serve`` ran in all, from start to stop, having taken
    ``messages`` phones' messages and delivered each to a webhook."""
    port = free_port()
    receiver = start_receiver(port)
    run = f"instructions-{time.monotonic_ns()}"
    url = f"sqlite:///{tmp / f'{messages}.db'}"
    await seed(url, TENANTS)
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    server = zapmux_server(tmp / str(messages), url, f"http://127.0.0.1:{port}/r/{run}", valgrind)
    try:
        await server.wait_health(limit_s=300)
        async with aiohttp.ClientSession() as http:
            bodies = phone_bodies(messages, TENANTS, "")
            await post_all(server.url + "/sandbox/messages", bodies, CONCURRENCY)
            deadline = time.monotonic() + 600
            while await arrived(http, f"http://127.0.0.1:{port}", run) < messages:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not every one of {messages} messages arrived")
                await asyncio.sleep(0.2)
    finally:
        server.proc.terminate()  # a clean stop: callgrind writes its file at the exit
        server.proc.wait(300)
        receiver.terminate()
        receiver.wait(10)
    return _totals(out)


def _totals(out: Path) -> int:
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"{out} holds no totals (did the server stop cleanly?)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=900)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("this measure needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 0 < args.small < args.large:
        print("--small must be above 0 and below --large", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="zapmux-instructions-"))
    totals = {
        n: asyncio.run(server_instructions(n, tmp / f"callgrind.{n}.out", tmp))
        for n in (args.small, args.large)
    }
    per_message = (totals[args.large] - totals[args.small]) / (args.large - args.small)
    print(f"server instructions per inbound message: {per_message / 1000:,.0f}K")
    print(f"callgrind files: {tmp}/callgrind.{{{args.small},{args.large}}}.out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
