#!/usr/bin/env bash
# The old server's reset_whatsapp.sh, now `zapmux reset`: closes every WhatsApp
# connection, clears retry counters and loop breakers, starts every tenant again, waits
# and reports each tenant's state. Unlike the old script it does not restart processes:
# zapmux recovers its connections in place.
#
#   scripts/reset_whatsapp.sh            asks, then reconnects every tenant
#   scripts/reset_whatsapp.sh --yes      without asking (cron, CI)
#   scripts/reset_whatsapp.sh --purge    also wipes every session: all must scan a QR again
#
# Where: ZAPMUX_URL (default http://127.0.0.1:4000), ZAPMUX_API_KEY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/zapmux" ]]; then ZAPMUX=("$ROOT/.venv/bin/zapmux")
elif command -v zapmux >/dev/null; then ZAPMUX=(zapmux)
else ZAPMUX=(python3 -m zapmux); fi
exec "${ZAPMUX[@]}" reset "$@"
