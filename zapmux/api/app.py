"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from zapmux import __version__
from zapmux.api import (
    cloud,
    dashboard,
    errors,
    inbound,
    messages,
    metrics,
    optouts,
    simulator,
    streams,
    system,
    tenants,
)
from zapmux.api.deps import require_admin
from zapmux.api.forward import Forwarder
from zapmux.api.hot import HotRoutes
from zapmux.config import Settings
from zapmux.gateway import Gateway

JSON_LIMIT = 1024 * 1024


def send_limit(media_max_bytes: int) -> int:
    """The body limit of the send routes: the media as base64, plus the JSON around it."""
    return media_max_bytes * 4 // 3 + JSON_LIMIT


class BodyLimit:
    """413 for bodies over the limit: 1 MiB of JSON, more on send routes (media)."""

    def __init__(self, app: ASGIApp, media_limit: int) -> None:
        self.app = app
        self.media_limit = send_limit(media_limit)

    def limit_for(self, path: str) -> int:
        return (
            self.media_limit if path.endswith("/send") or path.startswith("/send/") else JSON_LIMIT
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            # A client that waits for "100 Continue" has sent nothing: it reads at once.
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            await _too_large(send, limit, not waiting and await _drain(receive, 0))
            return
        seen = 0
        overflowed = complete = False

        async def counted() -> Message:
            # Past the limit the app is told the client left; whatever it answers to
            # that is dropped and the 413 sent instead (FastAPI would turn an exception
            # raised here into a 400 "error parsing the body").
            nonlocal seen, overflowed, complete
            if overflowed:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            complete = message["type"] != "http.request" or not message.get("more_body")
            if seen > limit:
                overflowed = True
                return {"type": "http.disconnect"}
            return message

        async def answer(message: Message) -> None:
            if not overflowed:
                await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception:
            if not overflowed:
                raise  # past the limit, whatever failed failed on a cut-off body
        if overflowed:
            await _too_large(send, limit, complete or await _drain(receive, seen))


#: How much of a refused body is read (and thrown away) before the 413, and for how long.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_S = 10.0


async def _drain(receive: Receive, seen: int) -> bool:
    """Read the rest of a refused body, up to a bound: whether all of it was read.

    A client that writes its whole body before it reads (urllib, requests) would get
    a connection reset instead of the 413 if the server closed on unread data; nginx's
    lingering close does the same.
    """
    try:
        async with asyncio.timeout(DRAIN_S):
            while seen <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body"):
                    return message["type"] == "http.request"
                seen += len(message.get("body", b""))
    except TimeoutError:
        pass
    return False


async def _too_large(send: Send, limit: int, drained: bool) -> None:
    response = errors.error_response(
        413, "payload_too_large", f"the request body is over {limit} bytes"
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(response.body)).encode()),
    ]
    if not drained:  # the rest of the body is still on its way: this connection is done
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def create_app(settings: Settings, gateway: Gateway | None = None) -> FastAPI:
    """The whole HTTP API over one gateway (built from ``settings`` if not given)."""
    gw = gateway or Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = ZapmuxApp(
        title="zapmux",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        openapi_url=None,
        redirect_slashes=False,  # "/tenants/" + an empty id is a 404, not a redirect
        description="Multi-tenant WhatsApp gateway.",
        # zapmux's own metrics are at /metrics; FastAPI's OpenTelemetry hooks looked up
        # their providers on every request (a few percent of a send) and are off
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gw
    errors.install(app)
    for module in (tenants, messages, optouts, system, inbound, streams, metrics, dashboard, cloud):
        app.include_router(module.router, responses=errors.ERROR_RESPONSES)
    if settings.engine == "sandbox":
        app.include_router(simulator.router, responses=errors.ERROR_RESPONSES)
    _install_docs(app)
    dashboard.mount_static(app)
    app.add_middleware(Forwarder, gateway=gw)  # inside BodyLimit: forwarded bodies are capped too
    app.add_middleware(BodyLimit, media_limit=settings.media_max_bytes)
    app.front = HotRoutes(app.stack, gw, send_limit(settings.media_max_bytes), JSON_LIMIT)
    return app


class ZapmuxApp(FastAPI):
    """FastAPI with a front door: ``front`` (``api/hot.py``) sees every request first and
    hands what it does not serve itself to the whole stack (:meth:`stack`)."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None or scope["type"] != "http" or self._telemetry_on():
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application behind the front door: middleware, routes, error handlers."""
        await super().__call__(scope, receive, send)

    def _telemetry_on(self) -> bool:
        """FastAPI's own OpenTelemetry, when configured, sees every request whole."""
        telemetry = getattr(self, "_native_telemetry", None)
        return telemetry is not None and bool(telemetry.enabled())


def _install_docs(app: FastAPI) -> None:
    """OpenAPI and Swagger UI, behind the admin key like everything but /health."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_admin)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require_admin)])
    async def docs(request: Request) -> HTMLResponse:
        key = request.query_params.get("api_key")
        schema = "/openapi.json" + (f"?{urlencode({'api_key': key})}" if key else "")
        return get_swagger_ui_html(
            openapi_url=schema,
            title="zapmux API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    # Swagger UI's own files, served here: no CDN, so /docs works offline too.
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
