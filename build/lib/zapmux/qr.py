"""QR codes drawn for people: PNG, data URL, terminal text."""

from __future__ import annotations

import base64
import io
from typing import Any

import segno

from zapmux.events import QrCode


def qr_png(code: str, scale: int = 6) -> bytes:
    buffer = io.BytesIO()
    segno.make(code, error="l").save(buffer, kind="png", scale=scale, border=2)
    return buffer.getvalue()


def qr_data_url(code: str) -> str:
    return "data:image/png;base64," + base64.b64encode(qr_png(code)).decode()


def qr_text(code: str) -> str:
    """The code drawn with block characters, for a terminal."""
    buffer = io.StringIO()
    segno.make(code, error="l").terminal(out=buffer, compact=True, border=2)
    return buffer.getvalue()


def qr_view(qr: QrCode) -> dict[str, Any]:
    return {
        "qr": qr.code,
        "qr_image": qr_data_url(qr.code),
        "expires_at": qr.expires_at,
        "index": qr.index,
        "total": qr.total,
    }
