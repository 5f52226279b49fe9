"""The operator's dashboard at ``GET /``.

The server renders only the page shell; the browser script (``static/app.js``) reads
and drives the tenants through the same JSON API and live event stream as any other
client. So the page itself needs no admin key (a browser cannot send a header on
navigation): the script asks for the key when the API answers 401.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from zapmux import __version__
from zapmux.api.strict import StrictRoute
from zapmux.states import Status

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
templates = Jinja2Templates(directory=DASHBOARD_DIR / "templates")
router = APIRouter(route_class=StrictRoute)

#: Each state in plain words: a short label for the pill and what to do about it.
STATE_TEXT: dict[Status, tuple[str, str]] = {
    Status.STOPPED: ("Stopped", "Not running. Press Start to connect."),
    Status.CONNECTING: ("Connecting", "Opening the connection to WhatsApp…"),
    Status.AWAITING_QR: (
        "Waiting for scan",
        "On the phone open WhatsApp › Linked devices › Link a device, and scan this code.",
    ),
    Status.CONNECTED: ("Connected", "Online. Messages go out right away."),
    Status.RECONNECTING: ("Reconnecting", "The connection dropped; trying again by itself."),
    Status.QR_TIMEOUT: (
        "QR expired",
        "No one scanned the code in time. Press Start for a new one.",
    ),
    Status.LOGGED_OUT: ("Logged out", "This number was unlinked. Press Start to pair it again."),
    Status.REPLACED: (
        "Replaced",
        "Another client took over this session. Press Start to take it back.",
    ),
    Status.BANNED: ("Banned", "WhatsApp banned this number."),
    Status.FAILED: ("Failed", "Stopped after an error (see below). Press Restart to try again."),
}


def _states() -> list[dict[str, str]]:
    return [
        {"id": status.value, "label": label, "hint": hint}
        for status, (label, hint) in STATE_TEXT.items()
    ]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    """The dashboard page shell."""
    # Behind a proxy that mounts zapmux under a prefix, every URL the page uses must carry it.
    base = str(request.scope.get("root_path", "")).rstrip("/")
    context = {"base": base, "version": __version__, "states": _states()}
    return templates.TemplateResponse(request, "index.html", context)


def mount_static(app: FastAPI) -> None:
    """Serve the dashboard's script, styles and icon at ``/static``."""
    app.mount("/static", StaticFiles(directory=DASHBOARD_DIR / "static"), name="static")
