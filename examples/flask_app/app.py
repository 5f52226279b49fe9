"""A small Flask app standing in for "Sua Agenda": the other end of zapmux.

- ``POST /webhook/whatsapp``: zapmux delivers incoming WhatsApp messages here. The
  signature is checked when a secret is set; a delivery seen before (same
  ``X-Zapmux-Delivery``) is answered 200 and counted, not stored twice.
- ``POST /api/whatsapp/send {"chat_id", "message"}``: sends through zapmux's
  ``POST /send/{empresa_id}`` (``chat_id`` is the customer's phone here).
- ``GET /api/messages``: what was stored. ``GET /health``.
- Appointments, the flow a scheduling business runs (README, "An appointment, end to
  end"): ``POST /api/appointments {"phone", "when", "remind_at"}`` schedules a
  confirm-or-reschedule question in zapmux for ``remind_at`` (Unix seconds);
  ``POST /api/appointments/<id>/move {"when", "remind_at"}`` cancels that reminder and
  schedules a new one; the customer's vote (or typed ``1``/``2``) arrives at the
  webhook with a ``poll`` naming the question, and is stored against the appointment;
  ``GET /api/appointments/<id>`` shows it.

Run it with ``python examples/flask_app/app.py`` (``PORT``, default 5000). Settings
come from the environment or from the dict given to ``create_app``: see ``DEFAULTS``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import time
from typing import Any
from urllib.parse import quote

import httpx
from flask import Flask, current_app, g, jsonify, request

#: Every setting, with the environment variable that sets it.
DEFAULTS: dict[str, tuple[str, Any]] = {
    "DATABASE": ("AGENDA_DATABASE", "agenda.db"),
    "WHATSAPP_API_URL": ("WHATSAPP_API_URL", "http://localhost:4000"),
    "ZAPMUX_API_KEY": ("ZAPMUX_API_KEY", None),
    "WEBHOOK_SECRET": ("ZAPMUX_WEBHOOK_SECRET", None),
    "EMPRESA_ID": ("EMPRESA_ID", "1"),
    "SIGNATURE_MAX_AGE_S": ("SIGNATURE_MAX_AGE_S", 300),
    "SEND_TIMEOUT_S": ("SEND_TIMEOUT_S", 15.0),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT UNIQUE,          -- X-Zapmux-Delivery; NULL when the sender gave none
    message_id TEXT,
    empresa_id TEXT,
    phone TEXT,
    message TEXT,
    message_type TEXT,
    push_name TEXT,
    chat TEXT,
    is_group INTEGER,
    from_me INTEGER,
    timestamp INTEGER,
    received_at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS appointments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    empresa_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    "when" TEXT NOT NULL,             -- as shown to the customer ("amanhã às 10h")
    remind_at REAL NOT NULL,
    reminder_message_id TEXT,         -- zapmux's id of the scheduled question
    answer TEXT,                      -- the option the customer chose
    status TEXT NOT NULL,             -- scheduled | confirmed | reschedule_requested
    answered_at REAL
);
"""
#: The question's answers, and what each means for the appointment.
ANSWERS = {"Confirmo": "confirmed", "Preciso remarcar": "reschedule_requested"}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The app, configured from ``config`` first, then the environment, then DEFAULTS."""
    app = Flask(__name__)
    for key, (env, default) in DEFAULTS.items():
        app.config[key] = os.environ.get(env, default)
    app.config.update(config or {})
    with app.app_context():
        init_db()
    app.teardown_appcontext(_close_db)
    app.add_url_rule("/webhook/whatsapp", view_func=webhook, methods=["POST"])
    app.add_url_rule("/api/whatsapp/send", view_func=send, methods=["POST"])
    app.add_url_rule("/api/messages", view_func=list_messages, methods=["GET"])
    app.add_url_rule("/health", view_func=health, methods=["GET"])
    app.add_url_rule("/api/appointments", view_func=create_appointment, methods=["POST"])
    app.add_url_rule("/api/appointments/<int:appointment_id>", view_func=get_appointment)
    app.add_url_rule(
        "/api/appointments/<int:appointment_id>/move", view_func=move_appointment, methods=["POST"]
    )
    return app


# --- storage ---------------------------------------------------------------------------
def db() -> sqlite3.Connection:
    """This request's connection to the app's SQLite file."""
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"], timeout=10)
        g.db.row_factory = sqlite3.Row
    return g.db


def init_db() -> None:
    """Create the tables when they are not there."""
    with db() as conn:
        conn.executescript(SCHEMA)


def _close_db(_exc: BaseException | None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def store_message(delivery_id: str | None, payload: dict[str, Any]) -> bool:
    """Store one incoming message; False when that delivery was stored before."""
    row = {k: payload.get(k) for k in ("message_id", "phone", "message", "message_type")}
    row.update({k: payload.get(k) for k in ("push_name", "chat", "timestamp")})
    row["empresa_id"] = None if payload.get("empresa_id") is None else str(payload["empresa_id"])
    row["is_group"] = int(bool(payload.get("is_group")))
    row["from_me"] = int(bool(payload.get("from_me")))
    row.update(delivery_id=delivery_id, received_at=time.time(), payload=json.dumps(payload))
    columns = ", ".join(row)
    try:
        with db() as conn:
            conn.execute(f"INSERT INTO messages ({columns}) VALUES (:{', :'.join(row)})", row)
    except sqlite3.IntegrityError:  # the UNIQUE delivery_id: zapmux delivered it again
        with db() as conn:
            conn.execute(
                "INSERT INTO counters VALUES ('duplicates', 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1"
            )
        return False
    return True


def duplicates() -> int:
    """How many deliveries arrived again and were not stored twice."""
    row = db().execute("SELECT value FROM counters WHERE name = 'duplicates'").fetchone()
    return int(row["value"]) if row else 0


# --- signature -------------------------------------------------------------------------
def signature_problem(secret: str, headers: Any, body: bytes, max_age_s: float) -> str | None:
    """Why this request's signature is not acceptable, or None when it is.

    zapmux signs ``"<X-Zapmux-Timestamp>.<raw body>"`` with HMAC-SHA256 and sends
    ``X-Zapmux-Signature: sha256=<hex>``. The timestamp bounds replays of a captured
    request to ``max_age_s``.
    """
    timestamp, signature = headers.get("X-Zapmux-Timestamp"), headers.get("X-Zapmux-Signature")
    if not timestamp or not signature:
        return "missing X-Zapmux-Timestamp or X-Zapmux-Signature"
    try:
        age = time.time() - int(timestamp)
    except ValueError:
        return "X-Zapmux-Timestamp is not a number"
    if abs(age) > max_age_s:
        return "timestamp too old (or too far in the future)"
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    if not hmac.compare_digest(f"sha256={mac.hexdigest()}", signature):
        return "bad signature"
    return None


# --- routes ----------------------------------------------------------------------------
def webhook() -> Any:
    """Receive one delivery from zapmux: verify, deduplicate, store."""
    body = request.get_data()  # the raw bytes: the signature covers them exactly
    secret = current_app.config.get("WEBHOOK_SECRET")
    if secret:
        max_age = float(current_app.config["SIGNATURE_MAX_AGE_S"])
        problem = signature_problem(secret, request.headers, body, max_age)
        if problem:
            return _error(401, "bad_signature", problem)
    try:
        payload = json.loads(body)
    except ValueError:
        return _error(400, "invalid_json", "the body is not JSON")
    if not isinstance(payload, dict):
        return _error(400, "invalid_payload", "the body is not a JSON object")
    if "event" in payload:
        # Envelopes of other events ({event, tenant_id, timestamp, data}) are not ours.
        return jsonify(success=True, stored=False, ignored=True)
    stored = store_message(request.headers.get("X-Zapmux-Delivery"), payload)
    if stored and isinstance(payload.get("poll"), dict):
        record_answer(payload["poll"])
    return jsonify(success=True, stored=stored, duplicate=not stored)


def send() -> Any:
    """Send a WhatsApp message through zapmux: ``{"chat_id": <phone>, "message"}``."""
    data = request.get_json(silent=True) or {}
    phone, message = str(data.get("chat_id") or "").strip(), data.get("message")
    if not phone or not isinstance(message, str) or not message:
        return _error(400, "invalid_input", "give chat_id (the phone) and message")
    empresa_id = data.get("empresa_id") or current_app.config["EMPRESA_ID"]
    try:
        response = _zapmux_send(str(empresa_id), phone, message)
    except httpx.HTTPError as exc:
        return _error(502, "zapmux_unreachable", f"cannot reach zapmux: {exc}")
    try:
        answer = response.json()
    except ValueError:
        return _error(502, "zapmux_bad_answer", response.text[:200])
    return jsonify(answer), response.status_code


def _zapmux_send(
    empresa_id: str, phone: str, message: str, key: str | None = None, **more: Any
) -> httpx.Response:
    headers = _zapmux_headers()
    key = key or request.headers.get("Idempotency-Key")  # a retried post sends once
    if key:
        headers["Idempotency-Key"] = key
    # Quoted: an empresa id from a request body must not be able to change the path.
    url = f"{_zapmux_url()}/send/{quote(empresa_id, safe='')}"
    body = {"phone": phone, "message": message, **more}
    return httpx.post(
        url, json=body, headers=headers, timeout=float(current_app.config["SEND_TIMEOUT_S"])
    )


def _zapmux_url() -> str:
    return str(current_app.config["WHATSAPP_API_URL"]).rstrip("/")


def _zapmux_headers() -> dict[str, str]:
    key = current_app.config.get("ZAPMUX_API_KEY")
    return {"X-Api-Key": key} if key else {}


# --- appointments ----------------------------------------------------------------------
def create_appointment() -> Any:
    """``{"phone", "when", "remind_at"}``: store it, schedule its reminder in zapmux."""
    data = request.get_json(silent=True) or {}
    phone, when = str(data.get("phone") or "").strip(), data.get("when")
    remind_at = data.get("remind_at")
    if not phone or not isinstance(when, str) or not isinstance(remind_at, int | float):
        return _error(400, "invalid_input", "give phone, when (text) and remind_at (Unix s)")
    empresa_id = str(data.get("empresa_id") or current_app.config["EMPRESA_ID"])
    with db() as conn:
        appointment_id = conn.execute(
            'INSERT INTO appointments (empresa_id, phone, "when", remind_at, status) '
            "VALUES (?, ?, ?, ?, 'scheduled')",
            (empresa_id, phone, when, remind_at),
        ).lastrowid
    return _schedule_reminder(int(appointment_id or 0), 201)


def move_appointment(appointment_id: int) -> Any:
    """``{"when", "remind_at"}``: cancel the old reminder in zapmux, schedule a new one."""
    data = request.get_json(silent=True) or {}
    appointment = _appointment(appointment_id)
    if appointment is None:
        return _error(404, "not_found", "no such appointment")
    if not isinstance(data.get("when"), str) or not isinstance(data.get("remind_at"), int | float):
        return _error(400, "invalid_input", "give when (text) and remind_at (Unix s)")
    old = appointment["reminder_message_id"]
    if old:
        url = f"{_zapmux_url()}/tenants/{quote(appointment['empresa_id'], safe='')}/messages/{quote(old, safe='')}"
        cancelled = httpx.delete(url, headers=_zapmux_headers(), timeout=10)
        if cancelled.status_code not in (200, 404, 409):  # 409: it went out already
            return _error(502, "zapmux_refused", cancelled.text[:200])
    with db() as conn:
        conn.execute(
            "UPDATE appointments SET \"when\" = ?, remind_at = ?, status = 'scheduled', "
            "answer = NULL, answered_at = NULL, reminder_message_id = NULL WHERE id = ?",
            (data["when"], data["remind_at"], appointment_id),
        )
    return _schedule_reminder(appointment_id, 200)


def _schedule_reminder(appointment_id: int, status: int) -> Any:
    """Ask zapmux to send the confirm-or-reschedule question at ``remind_at``."""
    appointment = _appointment(appointment_id)
    assert appointment is not None
    question = f"Olá! Lembrete do seu horário {appointment['when']}. Você confirma?"
    # One key per appointment and time: a retried request never schedules twice.
    key = f"appointment-{appointment_id}-{appointment['remind_at']}"
    try:
        response = _zapmux_send(
            appointment["empresa_id"], appointment["phone"], question, key,
            options=list(ANSWERS), send_at=appointment["remind_at"],
        )  # fmt: skip
    except httpx.HTTPError as exc:
        return _error(502, "zapmux_unreachable", f"cannot reach zapmux: {exc}")
    answer = response.json()
    if response.status_code != 202:
        return jsonify(success=False, appointment=appointment, zapmux=answer), response.status_code
    with db() as conn:
        conn.execute(
            "UPDATE appointments SET reminder_message_id = ? WHERE id = ?",
            (answer["message_id"], appointment_id),
        )
    return jsonify(success=True, appointment=_appointment(appointment_id)), status


def record_answer(poll: dict[str, Any]) -> None:
    """A vote (or typed answer) on a reminder: store it against its appointment."""
    selected = poll.get("selected") or []
    with db() as conn:
        conn.execute(
            "UPDATE appointments SET answer = ?, status = ?, answered_at = ? "
            "WHERE reminder_message_id = ?",
            (
                selected[0] if selected else None,
                ANSWERS.get(selected[0], "scheduled") if selected else "scheduled",
                time.time(),
                poll.get("message_id"),
            ),
        )


def _appointment(appointment_id: int) -> dict[str, Any] | None:
    row = db().execute("SELECT * FROM appointments WHERE id = ?", (appointment_id,)).fetchone()
    return {k: row[k] for k in row.keys()} if row else None


def get_appointment(appointment_id: int) -> Any:
    appointment = _appointment(appointment_id)
    if appointment is None:
        return _error(404, "not_found", "no such appointment")
    return jsonify(success=True, appointment=appointment)


def list_messages() -> Any:
    """The stored messages, newest first (``?limit=``, ``?phone=``)."""
    limit = min(max(request.args.get("limit", 100, type=int) or 100, 1), 1000)
    query, args = "SELECT * FROM messages", []
    if request.args.get("phone"):
        query, args = query + " WHERE phone = ?", [request.args["phone"]]
    rows = db().execute(query + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
    messages = [_row(r) for r in rows]
    return jsonify(success=True, messages=messages, duplicates=duplicates())


def _row(row: sqlite3.Row) -> dict[str, Any]:
    item = {k: row[k] for k in row.keys() if k != "payload"}
    item["is_group"], item["from_me"] = bool(row["is_group"]), bool(row["from_me"])
    item["payload"] = json.loads(row["payload"])  # what zapmux sent, as it sent it
    return item


def health() -> Any:
    """Liveness, and a query to show the database answers."""
    count = db().execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    return jsonify(status="ok", messages=count, duplicates=duplicates())


def _error(status: int, code: str, message: str) -> Any:
    return jsonify(success=False, error={"code": code, "message": message}), status


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
