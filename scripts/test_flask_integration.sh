#!/usr/bin/env bash
# End-to-end check of zapmux with the Flask example app (the old server's
# test_flask_integration.sh): starts zapmux (sandbox engine) and the Flask app on free
# ports, pairs a tenant through the sandbox, sends through Flask, injects a customer's
# message and checks Flask stored it; then the appointment flow: Flask schedules a
# confirm-or-reschedule reminder, the customer votes, Flask stores the vote against the
# appointment, and a moved appointment's reminder is cancelled in zapmux. Exits
# non-zero, saying why, on any failure.
#
# Usage: scripts/test_flask_integration.sh   (after `make test` made .venv, or with
# zapmux's dependencies and Flask importable by python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
TIMEOUT="${INTEGRATION_TIMEOUT:-30}"   # seconds for each wait
TENANT="1"                             # all digits: webhooks carry empresa_id as a number
BUSINESS_PHONE="5511900000001"         # the phone that "scans" the QR
CUSTOMER="5511977776666"               # the customer who writes in
RECIPIENT="5511988887777"              # whom the business writes to
PATIENT="5511966665555"                # who has an appointment

WORK="$(mktemp -d "${TMPDIR:-/tmp}/zapmux-it.XXXXXX")"
PIDS=()

log()  { printf '%s\n' "$*"; }
fail() {
  printf '❌ FAILED: %s\n' "$*" >&2
  for f in zapmux flask; do
    [[ -s "$WORK/$f.log" ]] || continue
    printf -- '--- last lines of %s.log (without the polling) ---\n' "$f" >&2
    grep -v -E '"GET /(health|api/messages|tenants/|sandbox/phones/)' "$WORK/$f.log" | tail -n 25 >&2 || true
  done
  exit 1
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A tiny HTTP client (stdlib only, so python3 works without the venv):
#   http METHOD URL [JSON]  →  sets STATUS and BODY (STATUS=000 when nothing answered).
cat >"$WORK/it_client.py" <<'PY'
import json, os, sys, urllib.error, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method)
req.add_header("Content-Type", "application/json")
if os.environ.get("IT_API_KEY"):
    req.add_header("X-Api-Key", os.environ["IT_API_KEY"])
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        status, body = resp.status, resp.read()
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read()
except OSError as exc:
    status, body = 0, json.dumps({"error": str(exc)}).encode()
print(f"{status:03d}")
print(body.decode(errors="replace"))
PY
http() {
  local out
  out="$("$PY" "$WORK/it_client.py" "$@")"
  STATUS="${out%%$'\n'*}"
  BODY="${out#*$'\n'}"
}
# jfield EXPR [ARG]: a Python expression over the JSON in $BODY (bound to `b`; ARG is
# sys.argv[3], so texts need no quoting inside the expression).
jfield() { "$PY" -c 'import json,sys; b=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$BODY" "$@"; }

# Two free ports at once, so they cannot be the same one.
read -r ZPORT FPORT < <("$PY" -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
ZAPMUX="http://127.0.0.1:$ZPORT"
FLASK="http://127.0.0.1:$FPORT"
API_KEY="it-key-$RANDOM$RANDOM"
SECRET="it-secret-$RANDOM$RANDOM"
export IT_API_KEY="$API_KEY"

# Nothing from the caller's environment may steer the servers: drop zapmux's variables
# and the seed's aliases, and run zapmux where no .env file is.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(ZAPMUX_|FLASK_URL$|PORT$|AUTH_DIR$)' || true)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

log "▶ zapmux on $ZAPMUX, Flask on $FLASK (work dir $WORK)"
(cd "$WORK" && exec env ZAPMUX_DATA_DIR="$WORK/data" ZAPMUX_AUTH_DIR="$WORK/auth" \
  ZAPMUX_FLASK_URL="$FLASK" ZAPMUX_API_KEY="$API_KEY" ZAPMUX_WEBHOOK_SECRET="$SECRET" \
  ZAPMUX_SANDBOX_QR_SECONDS=5 ZAPMUX_DELIVERY_BACKOFF_BASE_S=0.2 \
  "$PY" -m zapmux serve --engine sandbox --host 127.0.0.1 --port "$ZPORT") >"$WORK/zapmux.log" 2>&1 &
PIDS+=($!)
(cd "$WORK" && exec env PORT="$FPORT" AGENDA_DATABASE="$WORK/agenda.db" EMPRESA_ID="$TENANT" \
  WHATSAPP_API_URL="$ZAPMUX" ZAPMUX_API_KEY="$API_KEY" ZAPMUX_WEBHOOK_SECRET="$SECRET" \
  "$PY" "$ROOT/examples/flask_app/app.py") >"$WORK/flask.log" 2>&1 &
PIDS+=($!)

# wait_until DESCRIPTION COMMAND...: retry COMMAND every 0.3 s until it succeeds or TIMEOUT.
wait_until() {
  local what="$1"; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for $what"
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a server exited while waiting for $what"; done
    sleep 0.3
  done
}
healthy() { http GET "$1/health"; [[ "$STATUS" == 200 ]]; }

wait_until "zapmux /health" healthy "$ZAPMUX"
wait_until "Flask /health" healthy "$FLASK"
log "✅ both servers answer /health"

http POST "$ZAPMUX/tenants" "{\"tenantId\": \"$TENANT\"}"
[[ "$STATUS" == 201 ]] || fail "POST /tenants answered $STATUS: $BODY"
log "✅ tenant $TENANT created"

# Scan the code the tenant shows now; a code that rotated in between (410) is fetched again.
scanned() {
  http GET "$ZAPMUX/tenants/$TENANT/qr"
  [[ "$STATUS" == 200 ]] || return 1
  local qr; qr="$(jfield 'b.get("qr") or ""')"
  [[ -n "$qr" ]] || return 1
  http POST "$ZAPMUX/sandbox/scan" "{\"qr\": \"$qr\", \"phone\": \"$BUSINESS_PHONE\"}"
  [[ "$STATUS" == 200 ]] || { log "  scan answered $STATUS, trying the next code"; return 1; }
}
wait_until "a QR code to scan" scanned
log "📱 QR scanned by $BUSINESS_PHONE"

connected() { http GET "$ZAPMUX/tenants/$TENANT/status"; [[ "$(jfield 'b.get("status")')" == connected ]]; }
wait_until "tenant $TENANT to be connected" connected
log "✅ tenant $TENANT connected"

OUT_TEXT="Lembrete: seu horário é amanhã às 10h ($RANDOM)"
http POST "$FLASK/api/whatsapp/send" "{\"chat_id\": \"$RECIPIENT\", \"message\": \"$OUT_TEXT\"}"
[[ "$STATUS" == 200 || "$STATUS" == 202 ]] || fail "Flask /api/whatsapp/send answered $STATUS: $BODY"
[[ "$(jfield 'b.get("success")')" == True ]] || fail "send did not succeed: $BODY"
received() {
  http GET "$ZAPMUX/sandbox/phones/$RECIPIENT/messages"
  [[ "$STATUS" == 200 ]] && [[ "$(jfield "any(m.get('text') == sys.argv[3] for m in b['messages'])" "$OUT_TEXT")" == True ]]
}
wait_until "$RECIPIENT to receive the message sent through Flask" received
log "📨 $RECIPIENT received the message sent through Flask"

IN_TEXT="Olá, quero marcar um horário ($RANDOM)"
http POST "$ZAPMUX/sandbox/messages" "{\"from\": \"$CUSTOMER\", \"tenant_id\": \"$TENANT\", \"text\": \"$IN_TEXT\"}"
[[ "$STATUS" == 2* ]] || fail "POST /sandbox/messages answered $STATUS: $BODY"
flask_stored() {
  # A delivery zapmux gave up on will never arrive: say why at once instead of timing out.
  http GET "$ZAPMUX/deliveries?status=dead"
  [[ "$STATUS" != 200 || "$(jfield 'len(b["deliveries"])')" == 0 ]] ||
    fail "zapmux gave up delivering to Flask: $(jfield 'b["deliveries"][0]["last_error"]')"
  http GET "$FLASK/api/messages?phone=$CUSTOMER"
  [[ "$STATUS" == 200 ]] && [[ "$(jfield "any(m['message'] == sys.argv[3] for m in b['messages'])" "$IN_TEXT")" == True ]]
}
wait_until "Flask to store the customer's message" flask_stored
EMPRESA="$(jfield 'json.dumps(b["messages"][0]["payload"]["empresa_id"])')"
[[ "$EMPRESA" == "$TENANT" ]] || fail "empresa_id should be the number $TENANT, got $EMPRESA"
log "📨 Flask stored the message from $CUSTOMER (signed, empresa_id=$EMPRESA)"

# --- the appointment flow ---------------------------------------------------------------
http POST "$FLASK/api/appointments" "{\"phone\": \"$PATIENT\", \"when\": \"amanhã às 10h\", \"remind_at\": $(($(date +%s) + 2))}"
[[ "$STATUS" == 201 ]] || fail "POST /api/appointments answered $STATUS: $BODY"
APPOINTMENT="$(jfield 'b["appointment"]["id"]')"
QUESTION="$(jfield 'b["appointment"]["reminder_message_id"]')"
http GET "$ZAPMUX/tenants/$TENANT/messages/$QUESTION"
[[ "$(jfield 'b.get("status")')" == scheduled ]] || fail "the reminder should wait, scheduled: $BODY"
log "⏰ appointment $APPOINTMENT: reminder $QUESTION scheduled in zapmux"

asked() {
  http GET "$ZAPMUX/sandbox/phones/$PATIENT/messages"
  [[ "$STATUS" == 200 ]] && [[ "$(jfield "any(m['message_id'] == sys.argv[3] and m['options'] == ['Confirmo', 'Preciso remarcar'] for m in b['messages'])" "$QUESTION")" == True ]]
}
wait_until "$PATIENT to receive the reminder with its answers" asked
log "📨 $PATIENT received the question at its time"

http POST "$ZAPMUX/sandbox/votes" "{\"from\": \"$PATIENT\", \"tenant_id\": \"$TENANT\", \"message_id\": \"$QUESTION\", \"options\": [\"Preciso remarcar\"]}"
[[ "$STATUS" == 201 ]] || fail "POST /sandbox/votes answered $STATUS: $BODY"
answered() {
  http GET "$FLASK/api/appointments/$APPOINTMENT"
  [[ "$STATUS" == 200 ]] && [[ "$(jfield 'b["appointment"]["answer"]')" == "Preciso remarcar" ]]
}
wait_until "Flask to store the vote against appointment $APPOINTMENT" answered
[[ "$(jfield 'b["appointment"]["status"]')" == reschedule_requested ]] || fail "appointment status: $BODY"
log "🗳️ Flask stored the vote against appointment $APPOINTMENT: Preciso remarcar"

http POST "$FLASK/api/appointments" "{\"phone\": \"$PATIENT\", \"when\": \"sexta às 9h\", \"remind_at\": $(($(date +%s) + 3600))}"
[[ "$STATUS" == 201 ]] || fail "POST /api/appointments answered $STATUS: $BODY"
SECOND="$(jfield 'b["appointment"]["id"]')"
OLD_REMINDER="$(jfield 'b["appointment"]["reminder_message_id"]')"
http POST "$FLASK/api/appointments/$SECOND/move" "{\"when\": \"sábado às 9h\", \"remind_at\": $(($(date +%s) + 7200))}"
[[ "$STATUS" == 200 ]] || fail "moving the appointment answered $STATUS: $BODY"
NEW_REMINDER="$(jfield 'b["appointment"]["reminder_message_id"]')"
http GET "$ZAPMUX/tenants/$TENANT/messages/$OLD_REMINDER"
[[ "$(jfield 'b.get("status")')" == cancelled ]] || fail "the old reminder should be cancelled: $BODY"
http GET "$ZAPMUX/tenants/$TENANT/messages?status=scheduled"
[[ "$(jfield "[m['message_id'] for m in b['messages']] == [sys.argv[3]]" "$NEW_REMINDER")" == True ]] ||
  fail "only the new reminder should be scheduled: $BODY"
log "🔄 appointment $SECOND moved: old reminder cancelled, new one scheduled"

log "✅ integration test passed"
