"""A small Flask app standing in for "Sua Agenda": the other end of zapmux.

- ``POST /webhook/whatsapp``: zapmux delivers incoming WhatsApp messages here. The
  signature is checked when a secret is set; a delivery seen before (same
  ``X-Zapmux-Delivery``) is answered 200 and counted, not stored twice.
- ``POST /api/whatsapp/send {"chat_id", "message"}``: sends through zapmux's
  ``POST /send/{empresa_id}`` (``chat_id`` is the customer's phone here).
- ``GET /api/messages``: what was stored. ``GET /health``.

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
"""


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


def _zapmux_send(empresa_id: str, phone: str, message: str) -> httpx.Response:
    config = current_app.config
    headers = {"X-Api-Key": config["ZAPMUX_API_KEY"]} if config.get("ZAPMUX_API_KEY") else {}
    if request.headers.get("Idempotency-Key"):  # lets a retried form post send once
        headers["Idempotency-Key"] = request.headers["Idempotency-Key"]
    # Quoted: an empresa id from a request body must not be able to change the path.
    url = f"{config['WHATSAPP_API_URL'].rstrip('/')}/send/{quote(empresa_id, safe='')}"
    timeout = float(config["SEND_TIMEOUT_S"])
    return httpx.post(
        url, json={"phone": phone, "message": message}, headers=headers, timeout=timeout
    )


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
