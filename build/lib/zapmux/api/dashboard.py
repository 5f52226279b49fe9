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
from zapmux.reasons import labels

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
templates = Jinja2Templates(directory=DASHBOARD_DIR / "templates")
router = APIRouter(route_class=StrictRoute)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    """The dashboard page shell."""
    # Behind a proxy that mounts zapmux under a prefix, every URL the page uses must carry it.
    base = str(request.scope.get("root_path", "")).rstrip("/")
    context = {"base": base, "version": __version__, "states": labels()}
    return templates.TemplateResponse(request, "index.html", context)


def mount_static(app: FastAPI) -> None:
    """Serve the dashboard's script, styles and icon at ``/static``."""
    app.mount("/static", StaticFiles(directory=DASHBOARD_DIR / "static"), name="static")
