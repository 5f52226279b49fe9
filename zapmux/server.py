"""Running the server: settings, the loopback rule, logging, uvicorn."""

from __future__ import annotations

import errno
import logging
import socket
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
    engine that cannot run here or an address that cannot be bound). A refusal is one
    ❌ line that says what to do."""
    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:
        return _refuse(configuration_error(exc))
    refusal = settings.binding_refusal(settings.host)
    if refusal:
        return _refuse(refusal)
    problem = engine_problem(settings)
    if problem:
        return _refuse(problem, code=1)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        return _refuse(bind_error(settings.host, settings.port, exc), code=1)
    logs.configure(settings)
    from zapmux.api.app import create_app
    from zapmux.api.protocol import OneWriteProtocol

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
        # X-Forwarded-For/-Proto would only rewrite the client address and scheme, which
        # zapmux reads nowhere (no access log, no absolute URLs): not parsed per request
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        http=OneWriteProtocol,  # an answer's head and body in one write
    )
    _Server(config, app.state.gateway).run(sockets=[sock])
    return 0


def _refuse(message: str, code: int = 2) -> int:
    print(f"❌ zapmux: {message}", file=sys.stderr)
    return code


def configuration_error(exc: ValidationError) -> str:
    """The first invalid setting, named as a person sets it, and what it accepts."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "?"
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field else None
    names = [str(c) for c in getattr(alias, "choices", [])] or [name]
    option = f"--{name.replace('_', '-')} or " if name in {"host", "port", "engine"} else ""
    return (
        f"invalid {name} {error.get('input')!r}: {error['msg']}; "
        f"fix {option}{' / '.join(dict.fromkeys(names))} and start again"
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts (uvicorn is handed it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind_error(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host} (another zapmux?): stop it, "
            "or choose another port with --port or ZAPMUX_PORT"
        )
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {where}: choose a port above 1024 with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: set --host or ZAPMUX_HOST"
    return f"cannot listen on {where} ({exc.strerror or exc}): check --host and --port"


class _Server(uvicorn.Server):
    """uvicorn, telling the event streams to end as soon as a stop is asked: uvicorn
    waits for open responses before the app's own shutdown, and a stream never ends."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway.hub.close()
        super().handle_exit(sig, frame)
