"""The benchmark's webhook receiver, in its own process so that it never competes
with the client under test for the event loop: answers 200 and notes arrival times."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiohttp import web


def build_app() -> web.Application:
    arrivals: dict[str, list[tuple[Any, float, float]]] = {}

    async def hook(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        now = time.time()
        arrivals.setdefault(body["run"], []).append((body["n"], body["enqueued_at"], now))
        return web.Response(status=200, text='{"ok":true}', content_type="application/json")

    unique: dict[str, set[Any]] = {}  # per run, the keys seen (counted without a walk)

    async def any_hook(request: web.Request) -> web.Response:
        """Any JSON body (zapmux's own webhooks): counted by its ``message_id``."""
        body = json.loads(await request.read())
        key = body.get("message_id") or body.get("data", {}).get("message_id") or len(arrivals)
        run = request.match_info["run"]
        arrivals.setdefault(run, []).append((key, 0.0, time.time()))
        unique.setdefault(run, set()).add(key)
        return web.Response(status=200, text='{"ok":true}', content_type="application/json")

    async def count(request: web.Request) -> web.Response:
        run = request.match_info["run"]
        got = arrivals.get(run, [])
        seen = unique.get(run)
        return web.json_response(
            {
                "count": len(got),
                "unique": len(seen) if seen is not None else len({a[0] for a in got}),
            }
        )

    async def stats(request: web.Request) -> web.Response:
        unique.pop(request.match_info["run"], None)
        data: dict[str, Any] = {"arrivals": arrivals.pop(request.match_info["run"], [])}
        return web.json_response(data)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/r/{run}/{tail:.*}", any_hook)
    app.router.add_get("/count/{run}", count)
    app.router.add_get("/stats/{run}", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
