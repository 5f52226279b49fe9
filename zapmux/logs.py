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
from zapmux.redact import redact_urls

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
# Meta's access tokens (cloud tenants): never written anywhere, masked should one slip.
_META_TOKEN = re.compile(r"\bEAA[A-Za-z0-9]{20,}")
# A URL's password and its query values are where webhook receivers keep their
# credentials (``https://user:pass@host/hook?token=…``); the event streams' ``?api_key=``.


def tenant_of(record: logging.LogRecord) -> str | None:
    prefix = "zapmux.tenant."
    return record.name[len(prefix) :] if record.name.startswith(prefix) else None


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback: as RedactSecrets left it, else formatted now."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else None


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
        exception = _exception_text(self, record)
        if exception:
            line += "\n" + exception
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
        exception = _exception_text(self, record)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False)


class RedactSecrets(logging.Filter):
    """Masks configured secrets, tenant tokens and URL credentials in every record,
    its traceback included."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        cleaned = _TOKEN.sub("zt_***", text)
        cleaned = _META_TOKEN.sub("EAA***", cleaned)
        cleaned = redact_urls(cleaned)
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, "***")
        return cleaned

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
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
