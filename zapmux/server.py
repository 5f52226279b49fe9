"""Running the server: settings, the loopback rule, logging, uvicorn."""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from zapmux import logs
from zapmux.config import Settings
from zapmux.gateway import Gateway


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def engine_problem(settings: Settings) -> str | None:
    """Why the default engine cannot run on this machine, or None."""
    if settings.engine != "whatsmeow":
        return None
    from zapmux.engines.whatsmeow.availability import probe

    return probe()


def run(**overrides: Any) -> int:
    """Serve until stopped; the exit code (2 for a refused configuration, 1 for an
    engine that cannot run here)."""
    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:
        print(f"zapmux: invalid configuration: {exc}", file=sys.stderr)
        return 2
    refusal = settings.binding_refusal(settings.host)
    if refusal:
        print(f"zapmux: {refusal}", file=sys.stderr)
        return 2
    problem = engine_problem(settings)
    if problem:
        print(f"❌ zapmux: {problem}", file=sys.stderr)
        return 1
    logs.configure(settings)
    from zapmux.api.app import create_app

    app = create_app(settings)
    logging.getLogger("zapmux").info(
        "🚀 zapmux listening on http://%s:%d (engine %s)",
        settings.host,
        settings.port,
        settings.engine,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    _Server(config, app.state.gateway).run()
    return 0


class _Server(uvicorn.Server):
    """uvicorn, telling the event streams to end as soon as a stop is asked: uvicorn
    waits for open responses before the app's own shutdown, and a stream never ends."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway.hub.close()
        super().handle_exit(sig, frame)
