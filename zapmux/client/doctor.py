"""`zapmux doctor`: what the old `debug_whatsapp.sh` looked at, with a hint for each problem.

The checks ask a running server (and the Flask receiver) and return findings; printing
them and choosing the exit code is the command's job. A finding is a ``problem`` when
something will not get better by itself (or is failing now), a ``note`` when a person
may want to act but nothing is broken, ``ok`` otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from zapmux.client.remote import ClientSettings, Remote, RemoteError, Unreachable
from zapmux.states import DeliveryStatus, Status

#: The most deliveries of one status the doctor reads (the API's own maximum).
LIST_LIMIT = 1000


class Level(StrEnum):
    OK = "ok"
    NOTE = "note"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was seen, and what to do about it."""

    level: Level
    text: str
    hint: str | None = None


#: What each state means for a person, and what to run. ``{id}`` is the tenant id.
STATE_ADVICE: dict[Status, tuple[Level, str]] = {
    Status.CONNECTED: (Level.OK, ""),
    Status.CONNECTING: (Level.NOTE, "a connection attempt is under way; look again shortly"),
    Status.AWAITING_QR: (Level.NOTE, "waiting for a scan: `zapmux qr {id}` shows the code"),
    Status.STOPPED: (Level.NOTE, "stopped on purpose: `zapmux tenants start {id}` brings it back"),
    Status.RECONNECTING: (
        Level.PROBLEM,
        "cannot reach WhatsApp (network down? proxy? WhatsApp outage?); it retries by "
        "itself with backoff, `zapmux tenants restart {id}` retries now",
    ),
    Status.QR_TIMEOUT: (
        Level.PROBLEM,
        "nobody scanned the QR in time: `zapmux qr {id}` starts a new pairing, then scan it",
    ),
    Status.LOGGED_OUT: (
        Level.PROBLEM,
        "the phone unlinked this device (or it was logged out): pair again with `zapmux qr {id}`",
    ),
    Status.REPLACED: (
        Level.PROBLEM,
        "another client took over this session; close it, then `zapmux tenants restart {id}`",
    ),
    Status.BANNED: (
        Level.PROBLEM,
        "WhatsApp banned this number; zapmux cannot undo that (appeal from the phone's app)",
    ),
    Status.FAILED: (
        Level.PROBLEM,
        "zapmux cannot go on with this tenant: read the last error and the server log, "
        "then `zapmux tenants restart {id}`",
    ),
}


def is_problem(state: str) -> bool:
    """Whether a tenant in this state needs a person (or is failing now)."""
    try:
        return STATE_ADVICE[Status(state)][0] is Level.PROBLEM
    except ValueError:
        return True  # a state this CLI does not know: better looked at


def diagnose(remote: Remote, settings: ClientSettings) -> list[Finding]:
    """Every finding about the server, the Flask receiver, the tenants and the outbox.

    Raises Unreachable when the server does not answer at all: nothing else can be said.
    """
    findings = [check_health(remote)]
    try:
        findings.append(check_status(remote))
        findings.append(check_flask(settings.flask_url, settings.timeout_s))
        findings.extend(check_tenants(remote))
        findings.extend(check_deliveries(remote))
    except Unreachable:
        raise
    except RemoteError as exc:  # e.g. a wrong key: report it instead of half a report
        findings.append(Finding(Level.PROBLEM, f"the server refused: {exc}", _auth_hint(exc)))
    return findings


def check_health(remote: Remote) -> Finding:
    """Is the server up, and can it reach its store?"""
    try:
        remote.get("/health")
    except Unreachable:
        raise
    except RemoteError as exc:
        return Finding(Level.PROBLEM, f"zapmux is up but not healthy ({exc})", "read its log")
    return Finding(Level.OK, f"zapmux answers at {remote.url}")


def check_status(remote: Remote) -> Finding:
    """The version, engine and uptime from GET /status."""
    body = remote.get("/status")
    up = _duration(float(body.get("uptime_s") or 0))
    text = f"zapmux {body.get('version', '?')} running, {body.get('engine', '?')} engine, up {up}"
    return Finding(Level.OK, text)


def check_flask(url: str, timeout_s: float) -> Finding:
    """Is the receiver up? Any HTTP answer below 500 from {url}/health counts."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=min(timeout_s, 5.0))
    except httpx.HTTPError as exc:
        return Finding(
            Level.PROBLEM,
            f"Flask is not reachable at {url} ({exc or type(exc).__name__})",
            "start the Flask app, or set ZAPMUX_FLASK_URL/FLASK_URL to where it runs; "
            "incoming messages wait in the outbox meanwhile",
        )
    if response.status_code >= 500:
        return Finding(
            Level.PROBLEM, f"Flask at {url} answers HTTP {response.status_code}", "read its log"
        )
    return Finding(Level.OK, f"Flask answers at {url} (HTTP {response.status_code})")


def check_tenants(remote: Remote) -> list[Finding]:
    """One finding per tenant: its state, last error and what to do."""
    tenants = remote.get("/tenants").get("tenants") or []
    if not tenants:
        return [Finding(Level.NOTE, "no tenants yet", "create one: `zapmux tenants create ID`")]
    return [diagnose_tenant(_with_status(remote, t)) for t in tenants]


def diagnose_tenant(tenant: dict[str, Any]) -> Finding:
    """The finding for one tenant's status (as GET /tenants/{id}/status shows it)."""
    tid, state = tenant.get("tenant_id", "?"), str(tenant.get("status"))
    try:
        level, advice = STATE_ADVICE[Status(state)]
    except ValueError:
        level, advice = Level.PROBLEM, "unknown state; is this CLI older than the server?"
    who = " ".join(str(v) for v in (tenant.get("phone"), tenant.get("push_name")) if v)
    text = f"tenant {tid}: {state}" + (f" ({who})" if who else "")
    if level is not Level.OK and tenant.get("last_error"):
        text += f"; last error: {tenant['last_error']}"
        if tenant.get("detail"):
            text += f" [{tenant['detail']}]"
    if state == Status.RECONNECTING and tenant.get("reconnect_attempts"):
        text += f"; attempt {tenant['reconnect_attempts']}{_next_retry(tenant)}"
    return Finding(level, text, advice.format(id=tid) or None)


def check_deliveries(remote: Remote) -> list[Finding]:
    """The outbox backlog: pending deliveries (and why they wait) and dead ones."""
    try:
        pending = _deliveries(remote, DeliveryStatus.PENDING)
        dead = _deliveries(remote, DeliveryStatus.DEAD)
    except RemoteError as exc:
        if exc.status == 404:
            return [Finding(Level.NOTE, "this server has no deliveries API (GET /deliveries)")]
        raise
    return [_pending_finding(pending), *_stale_findings(pending), _dead_finding(dead)]


def _pending_finding(pending: list[dict[str, Any]]) -> Finding:
    failing = [d for d in pending if d.get("last_error")]
    if not pending:
        return Finding(Level.OK, "outbox: nothing waiting")
    if not failing:
        return Finding(Level.NOTE, f"outbox: {_many(pending)} deliveries on their way")
    return Finding(
        Level.PROBLEM,
        f"outbox: {_many(pending)} deliveries waiting (oldest {_oldest(pending)}), "
        f"{_many(failing)} failed at least once; last error: {failing[-1]['last_error']}",
        "check the receiver (Flask); they are retried by themselves with backoff",
    )


def _stale_findings(pending: list[dict[str, Any]]) -> list[Finding]:
    """Pending deliveries pinned to a URL that is no longer where their kind goes."""
    stale = [d for d in pending if d.get("stale")]
    if not stale:
        return []
    urls = sorted({str(d.get("url")) for d in stale})
    return [
        Finding(
            Level.PROBLEM,
            f"outbox: {_many(stale)} pending deliveries go to {', '.join(urls[:3])}, "
            "which is not the current target (they were relayed with an explicit URL)",
            "if that URL is gone, discard them so their chats go on: "
            f"`zapmux deliveries discard {stale[0].get('id')}` (one id at a time)",
        )
    ]


def _dead_finding(dead: list[dict[str, Any]]) -> Finding:
    if not dead:
        return Finding(Level.OK, "outbox: no dead deliveries")
    errors = sorted({str(d.get("last_error")) for d in dead if d.get("last_error")})
    return Finding(
        Level.PROBLEM,
        f"outbox: {_many(dead)} dead deliveries (the receiver refused them or they aged out)"
        + (f"; errors: {'; '.join(errors[:3])}" if errors else ""),
        "fix the receiver, then replay them: `zapmux deliveries retry-dead`",
    )


def _oldest(deliveries: list[dict[str, Any]]) -> str:
    stamps = [d["created_at"] for d in deliveries if d.get("created_at") is not None]
    if not stamps:
        return "?"
    numbers = [float(s) for s in stamps if isinstance(s, int | float)]
    if len(numbers) == len(stamps):  # epoch seconds: say how long ago
        return f"{_duration(time.time() - min(numbers))} ago"
    return min(str(s) for s in stamps)  # ISO 8601 strings sort in time order


def _deliveries(remote: Remote, status: str) -> list[dict[str, Any]]:
    return list(remote.get("/deliveries", status=status, limit=LIST_LIMIT).get("deliveries") or [])


def _many(rows: list[Any]) -> str:
    # The deliveries API pages; a full page means there may be more than it showed.
    return f"{len(rows)}+" if len(rows) >= LIST_LIMIT else str(len(rows))


def _with_status(remote: Remote, tenant: dict[str, Any]) -> dict[str, Any]:
    # The list may leave out the error fields; the status route has all of them.
    if "last_error" in tenant and "reconnect_attempts" in tenant:
        return tenant
    return {**tenant, **remote.get(f"/tenants/{tenant['tenant_id']}/status")}


def _next_retry(tenant: dict[str, Any]) -> str:
    at = tenant.get("next_retry_at")
    if not isinstance(at, int | float):
        return ""
    return f", next try in {max(0.0, at - time.time()):.0f} s"


def _auth_hint(exc: RemoteError) -> str | None:
    if exc.status in {401, 403}:
        return "set ZAPMUX_API_KEY to the server's admin key"
    return None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
