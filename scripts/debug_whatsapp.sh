#!/usr/bin/env bash
# The old server's debug_whatsapp.sh, now `zapmux doctor`: is zapmux up, is Flask up,
# every tenant's state and last error, the webhook outbox backlog, and a hint for each
# problem. Exits 1 when something is wrong, 3 when zapmux cannot be reached.
#
# Where: ZAPMUX_URL (default http://127.0.0.1:4000), ZAPMUX_API_KEY, FLASK_URL.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/zapmux" ]]; then ZAPMUX=("$ROOT/.venv/bin/zapmux")
elif command -v zapmux >/dev/null; then ZAPMUX=(zapmux)
else ZAPMUX=(python3 -m zapmux); fi
exec "${ZAPMUX[@]}" doctor "$@"
