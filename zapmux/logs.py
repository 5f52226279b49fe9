"""Logging: the old server's colours and emoji (pretty), or JSON lines with the same fields.

Secrets never reach a log line: the configured keys, and anything shaped like a tenant
token, are masked by a filter on the root handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from zapmux.config import Settings

_COLOURS = {
    "✅": "\033[32m",
    "❌": "\033[31m",
    "🔄": "\033[34m",
    "📱": "\033[36m",
    "📨": "\033[33m",
}
_LEVEL_COLOURS = {logging.ERROR: "\033[31m", logging.WARNING: "\033[33m", logging.DEBUG: "\033[2m"}
_RESET = "\033[0m"
_TOKEN = re.compile(r"zt_[A-Za-z0-9_\-]{8,}")


def tenant_of(record: logging.LogRecord) -> str | None:
    prefix = "zapmux.tenant."
    return record.name[len(prefix) :] if record.name.startswith(prefix) else None


class PrettyFormatter(logging.Formatter):
    """``HH:MM:SS ✅ [tenant] message``, coloured by the emoji it starts with."""

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        tenant = tenant_of(record)
        text = f"[{tenant}] {message}" if tenant else message
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if not self.colour:
            return line
        colour = next((c for e, c in _COLOURS.items() if message.startswith(e)), None)
        colour = colour or _LEVEL_COLOURS.get(record.levelno)
        return f"{colour}{line}{_RESET}" if colour else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, tenant_id, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "tenant_id": tenant_of(record),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RedactSecrets(logging.Filter):
    """Masks configured secrets and tenant tokens in every record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _TOKEN.sub("zt_***", message)
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure(settings: Settings, stream: Any = None) -> None:
    """Install the chosen format on the root logger (once, at server start)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PrettyFormatter(colour=hasattr(stream, "isatty") and stream.isatty()))
    handler.addFilter(RedactSecrets([settings.api_key or "", settings.webhook_secret or ""]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("uvicorn.access", "aiosqlite", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
