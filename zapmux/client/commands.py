"""The commands that talk to a running server: tenants, send, qr, deliveries, doctor, reset.

The server is at ``--url``, else ``ZAPMUX_URL``, else ``ZAPMUX_HOST``/``ZAPMUX_PORT``/``PORT``
(from the environment or .env; default http://127.0.0.1:4000); ``--api-key`` or
``ZAPMUX_API_KEY`` is sent as ``X-Api-Key``. Exit codes: 0 done, 1 the server refused or something is wrong,
2 bad usage, 3 the server could not be reached.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from zapmux.client.doctor import Finding, Level, diagnose, diagnose_tenant, is_problem
from zapmux.client.remote import ClientSettings, Remote, RemoteError, Unreachable
from zapmux.errors import InvalidTenantId
from zapmux.ids import validate_tenant_id
from zapmux.qr import qr_text
from zapmux.states import MessageStatus, Status

P = ParamSpec("P")
R = TypeVar("R")
EXIT_PROBLEM, EXIT_UNREACHABLE = 1, 3
ICONS = {Level.OK: "✅", Level.NOTE: "📱", Level.PROBLEM: "❌"}
STATE_ICONS: dict[str, str] = {
    Status.CONNECTED: "✅", Status.AWAITING_QR: "📱", Status.RECONNECTING: "🔄",
    Status.CONNECTING: "🔄",
}  # fmt: skip
#: States a tenant passes through right after /clear-all, before it settles.
UNSETTLED = frozenset({Status.STOPPED, Status.CONNECTING, Status.RECONNECTING})


def _tenant_id(value: str) -> str:
    try:
        return validate_tenant_id(value)
    except InvalidTenantId as exc:
        raise typer.BadParameter(exc.message) from exc


TenantArg = Annotated[str, typer.Argument(help="Tenant (empresa) id.", callback=_tenant_id)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The server (else ZAPMUX_URL, else ZAPMUX_HOST/ZAPMUX_PORT/PORT; "
        "default http://127.0.0.1:4000).",
        show_default=False,
    ),
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="The admin key (else ZAPMUX_API_KEY).")
]
#: --url and --api-key of the command being run.
_given: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "given", default=None
)


def remote_command(func: Callable[P, R]) -> Callable[P, R]:
    """Give the command ``--url`` and ``--api-key``, and turn the client's errors into
    one line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, url: str | None = None, api_key: str | None = None, **kwargs: Any) -> R:
        given = {k: v for k, v in {"url": url, "api_key": api_key}.items() if v}
        token = _given.set(given)
        try:
            return func(*args, **kwargs)
        except Unreachable as exc:
            typer.secho(f"❌ {exc.message}", fg="red", err=True)
            raise typer.Exit(EXIT_UNREACHABLE) from exc
        except RemoteError as exc:
            typer.secho(f"❌ {exc}", fg="red", err=True)
            raise typer.Exit(EXIT_PROBLEM) from exc
        finally:
            _given.reset(token)

    own = inspect.signature(func, eval_str=True)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in (("url", UrlOpt), ("api_key", ApiKeyOpt))
    ]
    wrapper.__signature__ = own.replace(parameters=[*own.parameters.values(), *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**func.__annotations__, "url": UrlOpt, "api_key": ApiKeyOpt}
    return wrapper  # type: ignore[return-value]


def client_settings() -> ClientSettings:
    """Where the server is: --url/--api-key, else the environment and .env."""
    return ClientSettings(**(_given.get() or {}))


def connect() -> Remote:
    """A client for the server the options or the environment name."""
    return Remote(client_settings())


# --- tenants ---------------------------------------------------------------------------
@remote_command
def tenants_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON list.")] = False,
) -> None:
    """List every tenant with its state, phone and last error."""
    with connect() as remote:
        tenants = remote.get("/tenants").get("tenants") or []
    if as_json:
        typer.echo(json.dumps(tenants, indent=2, ensure_ascii=False))
        return
    if not tenants:
        typer.echo("no tenants yet: `zapmux tenants create ID` makes one")
    for tenant in tenants:
        typer.echo(tenant_line(tenant))


def tenant_line(tenant: dict[str, Any]) -> str:
    """One tenant as a line: icon, id, state, phone, name, last error."""
    state = str(tenant.get("status"))
    icon = STATE_ICONS.get(state, "❌" if is_problem(state) else "⏸️")
    cells = [f"{tenant.get('tenant_id')!s:<16}", f"{state:<13}"]
    cells += [str(tenant[k]) for k in ("phone", "push_name") if tenant.get(k)]
    if tenant.get("last_error") and state != Status.CONNECTED:
        cells.append(f"last error: {tenant['last_error']}")
    return f"{icon} " + "  ".join(cells)


@remote_command
def tenants_create(tenant_id: TenantArg) -> None:
    """Create a tenant and start its pairing (then `zapmux qr ID`)."""
    with connect() as remote:
        body = remote.post("/tenants", {"tenantId": tenant_id})
    typer.echo(f"✅ tenant {tenant_id} created ({body.get('status', 'created')})")
    if body.get("token"):
        # The server shows a tenant token once; it grants only this tenant's routes.
        typer.echo(f"🔑 tenant token (shown only now): {body['token']}")
    typer.echo(f"📱 next: `zapmux qr {tenant_id}` and scan the code with the phone")


def _tenant_action(path: str, verb: str, doc: str, done: Callable[[str], bool]) -> Any:
    @remote_command
    def action(
        tenant_id: TenantArg,
        wait: Annotated[float, typer.Option(help="Seconds to wait for the outcome.")] = 10.0,
    ) -> None:
        with connect() as remote:
            remote.post(path.format(id=tenant_id))
            typer.echo(f"🔄 tenant {tenant_id} {verb}")
            tenant = wait_tenant(remote, tenant_id, done, wait)
        if not report([tenant]) or not done(str(tenant.get("status"))):
            raise typer.Exit(EXIT_PROBLEM)

    action.__doc__ = doc
    return action


def wait_tenant(
    remote: Remote, tenant_id: str, done: Callable[[str], bool], wait_s: float
) -> dict[str, Any]:
    """The tenant's status once ``done(state)``, or when time is up."""
    deadline = time.monotonic() + wait_s
    while True:
        tenant = remote.get(f"/tenants/{tenant_id}/status")
        if done(str(tenant.get("status"))) or time.monotonic() >= deadline:
            return tenant
        time.sleep(0.3)


def report(tenants: list[dict[str, Any]]) -> bool:
    """Print each tenant with the hint for its state; False when one needs a person."""
    fine = True
    for tenant in tenants:
        finding = diagnose_tenant(tenant)
        typer.echo(tenant_line(tenant))
        if finding.hint and finding.level is not Level.OK:
            typer.echo(f"   → {finding.hint}")
        fine = fine and finding.level is not Level.PROBLEM
    return fine


@remote_command
def tenants_delete(tenant_id: TenantArg, yes: YesOpt = False) -> None:
    """Log the tenant out of WhatsApp (unlinking the device), wipe its session, delete it."""
    if not yes:
        typer.confirm(f"Log {tenant_id} out of WhatsApp and delete it?", abort=True)
    with connect() as remote:
        remote.delete(f"/tenants/{tenant_id}")
    typer.echo(f"✅ tenant {tenant_id} logged out and deleted")


# --- send and qr -----------------------------------------------------------------------
@remote_command
def send(
    tenant_id: TenantArg,
    phone: Annotated[str, typer.Argument(help="Recipient, digits with country code.")],
    text: Annotated[str, typer.Argument(help="The message.")],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Same key within 24 h sends only once.")
    ] = None,
) -> None:
    """Send a text message from a tenant (`POST /send/{tenant}`)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with connect() as remote:
        response = remote.request(
            "POST", f"/send/{tenant_id}", json={"phone": phone, "message": text}, headers=headers
        )
    body = response.json()
    if body.get("status") == MessageStatus.QUEUED:
        typer.echo(f"⏳ queued {body.get('message_id')}: goes out when {tenant_id} can send")
    else:
        typer.echo(f"📨 sent {body.get('message_id')} to {body.get('jid') or phone}")


@remote_command
def qr(
    tenant_id: TenantArg,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Redraw as codes rotate, until paired.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a code.")] = 30.0,
) -> None:
    """Print the tenant's current pairing QR code in the terminal (starts pairing if needed)."""
    with connect() as remote:
        body = _fetch_qr(remote, tenant_id, wait)
        if body.get("status") == Status.CONNECTED:  # say as which phone: /status knows
            body = remote.get(f"/tenants/{tenant_id}/status")
        shown = _show_qr(tenant_id, body)
        if watch and body.get("status") == Status.AWAITING_QR:
            body = _watch(remote, tenant_id, shown, wait)
            _show_qr(tenant_id, body)
    if body.get("status") not in {Status.AWAITING_QR, Status.CONNECTED}:
        raise typer.Exit(EXIT_PROBLEM)


def _watch(remote: Remote, tenant_id: str, shown: str | None, wait_s: float) -> dict[str, Any]:
    """Redraw the code as it rotates; the tenant's status once it is past pairing."""
    while True:
        time.sleep(1.0)
        # Ask the state first: GET /qr would start a new pairing after a timeout, and a
        # watcher must not become the endless QR loop that zapmux itself avoids.
        status = remote.get(f"/tenants/{tenant_id}/status")
        if status.get("status") == Status.CONNECTING:
            continue  # scanned: the handshake is under way
        if status.get("status") != Status.AWAITING_QR:
            return status
        body = _fetch_qr(remote, tenant_id, wait_s)
        if body.get("qr") and body.get("qr") != shown:
            shown = _show_qr(tenant_id, body)


def _fetch_qr(remote: Remote, tenant_id: str, wait_s: float) -> dict[str, Any]:
    """The QR answer, waiting through the server's 202s (code not there yet)."""
    deadline = time.monotonic() + wait_s
    while True:
        response = remote.request("GET", f"/tenants/{tenant_id}/qr")
        body = dict(response.json())
        if response.status_code != 202 or body.get("status") == Status.RECONNECTING:
            return body  # a reconnecting tenant is paired: no code will come
        if time.monotonic() >= deadline:
            raise RemoteError(f"no QR code after {wait_s:.0f} s", "qr_not_ready", 202)
        time.sleep(min(_retry_after(response), 1.0))


def _show_qr(tenant_id: str, body: dict[str, Any]) -> str | None:
    raw, state = body.get("qr"), body.get("status")
    if state == Status.CONNECTED:
        typer.echo(
            f"✅ {tenant_id} is connected" + (f" as {body['phone']}" if body.get("phone") else "")
        )
    elif raw and state == Status.AWAITING_QR:
        typer.echo(qr_text(str(raw)))  # drawn as GET /qr?format=text draws it
        typer.echo(
            f"📱 {tenant_id}: scan in WhatsApp › Linked devices › Link a device"
            + _expiry(body.get("expires_at"))
        )
    else:
        advice = (
            "`zapmux qr` again to start a new pairing"
            if state == Status.QR_TIMEOUT
            else "see `zapmux doctor`"
        )
        typer.secho(f"❌ {tenant_id} is {state}: no QR code to show; {advice}", fg="red", err=True)
    return str(raw) if raw else None


def _expiry(expires_at: Any) -> str:
    if isinstance(expires_at, int | float):  # epoch seconds: say how long the code lives
        return f" within {max(0, round(expires_at - time.time()))} s"
    return f" before {expires_at}" if expires_at else ""


def _retry_after(response: Any) -> float:
    try:
        return max(0.2, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


# --- deliveries ------------------------------------------------------------------------
@remote_command
def deliveries_list(
    status: Annotated[str, typer.Option(help="pending, delivered or dead.")] = "dead",
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """List webhook deliveries of one status (dead by default)."""
    params = {"status": status, **({"tenant_id": tenant} if tenant else {})}
    with connect() as remote:
        rows = remote.get("/deliveries", **params).get("deliveries") or []
    for d in rows:
        typer.echo(
            f"{d.get('id')}  {d.get('status')}  {d.get('tenant_id')}  {d.get('event')}  "
            f"attempts={d.get('attempts')}  {d.get('last_error') or ''}".rstrip()
        )
    typer.echo(f"{len(rows)} {status} deliveries")


@remote_command
def deliveries_retry(delivery_id: Annotated[str, typer.Argument(help="Delivery id.")]) -> None:
    """Deliver one delivery again now."""
    with connect() as remote:
        remote.post(f"/deliveries/{delivery_id}/retry")
    typer.echo(f"🔄 delivery {delivery_id} queued again")


@remote_command
def deliveries_retry_dead(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
) -> None:
    """Queue every dead delivery again (after the receiver is fixed)."""
    with connect() as remote:
        params = {"tenant_id": tenant} if tenant else None
        body = remote.request("POST", "/deliveries/retry-dead", params=params).json()
    count = body.get("retried", "all")
    typer.echo(f"🔄 {count} dead deliveries queued again")


@remote_command
def deliveries_discard(
    delivery_id: Annotated[
        str | None, typer.Argument(help="Delivery id (a dead one, or a pending one stuck).")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Discard every dead delivery.")] = False,
    tenant: Annotated[str | None, typer.Option(help="With --dead: only this tenant's.")] = None,
    yes: YesOpt = False,
) -> None:
    """Remove a delivery for good (its chat's next deliveries go on), or every dead one."""
    if bool(delivery_id) == dead:
        raise typer.BadParameter("give one delivery id, or --dead (not both)")
    what = f"delivery {delivery_id}" if delivery_id else "every dead delivery"
    if not yes:
        typer.confirm(
            f"Discard {what}{f' of {tenant}' if tenant else ''}? It is never sent.", abort=True
        )
    with connect() as remote:
        if delivery_id:
            body = remote.post(f"/deliveries/{delivery_id}/discard")
        else:
            params = {"tenant_id": tenant} if tenant else None
            body = remote.request("POST", "/deliveries/discard-dead", params=params).json()
    typer.echo(f"🗑 {body.get('discarded', 0)} deliveries discarded")


# --- doctor and reset ------------------------------------------------------------------
@remote_command
def doctor() -> None:
    """Check the server, the Flask receiver, every tenant and the outbox; hint at fixes.

    Exits 1 when something is wrong, 3 when the server cannot be reached.
    """
    settings = client_settings()
    with Remote(settings) as remote:
        findings = diagnose(remote, settings)
    for finding in findings:
        print_finding(finding)
    problems = sum(f.level is Level.PROBLEM for f in findings)
    typer.echo(f"\n{problems} problem(s) found" if problems else "\n✅ all good")
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


def print_finding(finding: Finding) -> None:
    """One finding, and its hint indented below it."""
    colour = {Level.OK: "green", Level.NOTE: "yellow", Level.PROBLEM: "red"}[finding.level]
    typer.secho(f"{ICONS[finding.level]} {finding.text}", fg=colour)
    if finding.hint:
        typer.echo(f"   → {finding.hint}")


@remote_command
def reset(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also wipe every session: all must scan a QR again.")
    ] = False,
    yes: YesOpt = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for tenants to settle.")] = 30.0,
) -> None:
    """Close every connection, clear retry counters and loop breakers, start all again.

    What the old reset_whatsapp.sh did, through POST /clear-all; then waits and reports
    each tenant's state. Exits 1 when a tenant ends in a state that needs a person.
    """
    what = (
        "wipe every WhatsApp session (all tenants must pair again)"
        if purge
        else "reconnect every tenant"
    )
    if not yes:
        typer.confirm(f"This will {what}. Continue?", abort=True)
    with connect() as remote:
        body = remote.post("/clear-all", {"purge_sessions": purge})
        typer.echo(f"🔄 clear-all done{_count(body)}; waiting up to {wait:.0f} s for tenants")
        tenants = wait_settled(remote, wait)
    unsettled = any(str(t.get("status")) in UNSETTLED for t in tenants)
    if not report(tenants) or unsettled:
        raise typer.Exit(EXIT_PROBLEM)


def wait_settled(remote: Remote, wait_s: float) -> list[dict[str, Any]]:
    """The tenants once none is stopped or on its way to connect, or when time is up."""
    deadline = time.monotonic() + wait_s
    while True:
        time.sleep(0.5)  # clear-all restarts tenants in the background: let it begin
        tenants = list(remote.get("/tenants").get("tenants") or [])
        if time.monotonic() >= deadline or not any(
            str(t.get("status")) in UNSETTLED for t in tenants
        ):
            return tenants


def _count(body: dict[str, Any]) -> str:
    count = body.get("tenants")  # how many tenants /clear-all restarted
    return f" for {count} tenant(s)" if isinstance(count, int) else ""


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``zapmux`` app."""
    tenants = typer.Typer(
        help="Create, list, pair, restart and delete tenants.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    tenants.command("list")(tenants_list)
    tenants.command("create")(tenants_create)
    tenants.command("qr")(qr)
    for name, path, verb, doc, done in _ACTIONS:
        tenants.command(name)(_tenant_action(path, verb, doc, done))
    tenants.command("delete")(tenants_delete)
    app.add_typer(tenants, name="tenants")

    deliveries = typer.Typer(
        help="Inspect, replay and discard webhook deliveries.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    deliveries.command("list")(deliveries_list)
    deliveries.command("retry")(deliveries_retry)
    deliveries.command("retry-dead")(deliveries_retry_dead)
    deliveries.command("discard")(deliveries_discard)
    app.add_typer(deliveries, name="deliveries")

    for command in (send, qr, doctor, reset):
        app.command()(command)


def _settled(state: str) -> bool:
    # Reconnecting is an outcome too (the network is down): report it, do not wait it out.
    return state not in {Status.STOPPED, Status.CONNECTING}


_ACTIONS = [
    (
        "restart",
        "/restart/{id}",
        "restarted",
        "Close and reopen the tenant's connection, clearing its loop breaker.",
        _settled,
    ),
    (
        "start",
        "/tenants/{id}/start",
        "started",
        "Start the tenant (pairing by QR when it is not paired).",
        _settled,
    ),
    (
        "stop",
        "/tenants/{id}/stop",
        "stopped",
        "Close the tenant's connection and keep it closed.",
        lambda state: state == Status.STOPPED,
    ),
]
