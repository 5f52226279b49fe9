"""Each tenant state in words an operator acts on: a short label, and why the tenant is
not connected (with what to do). One mapping for the API (``reason`` in every tenant
view, so ``/status`` says it too) and the dashboard; the raw error stays beside it
(``last_error``, and ``detail`` where an engine gives one)."""

from __future__ import annotations

from zapmux.states import Status

#: The label of a stopped tenant that was never linked to a phone.
NOT_PAIRED = "Not paired yet — show QR"
NOT_PAIRED_REASON = "This number was never linked: show its QR code and scan it with the phone."

#: Per state: (label, why it is not connected and what to do; None when connected).
WORDS: dict[Status, tuple[str, str | None]] = {
    Status.STOPPED: ("Stopped", "Stopped on purpose: start it to connect."),
    Status.CONNECTING: ("Connecting", "Opening the connection to WhatsApp…"),
    Status.AWAITING_QR: (
        "Waiting for scan",
        "Waiting for the phone to scan the QR code (WhatsApp › Linked devices › Link a device).",
    ),
    Status.CONNECTED: ("Connected", None),
    Status.RECONNECTING: (
        "Reconnecting",
        "This server cannot reach WhatsApp right now; it retries by itself.",
    ),
    Status.QR_TIMEOUT: ("QR expired", "Nobody scanned the QR code in time: show a new one."),
    Status.LOGGED_OUT: (
        "Logged out",
        "Logged out on the phone (the device was unlinked): pair it again.",
    ),
    Status.REPLACED: (
        "Replaced",
        "Another WhatsApp Web or desktop session took over this number: close it, then restart.",
    ),
    Status.BANNED: ("Banned", "WhatsApp banned this number; only an appeal from the phone helps."),
    Status.FAILED: (
        "Failed",
        "Stopped after an error zapmux cannot get past: read the error, then restart.",
    ),
}


def never_paired(status: str, phone: str | None, jid: str | None) -> bool:
    """A stopped tenant with no phone: it was never linked (or its link was wiped)."""
    return status == Status.STOPPED and not phone and not jid


def reason(status: str, phone: str | None = None, jid: str | None = None) -> str | None:
    """Why the tenant is not connected, in words; None when it is (or the state is unknown)."""
    if never_paired(status, phone, jid):
        return NOT_PAIRED_REASON
    try:
        return WORDS[Status(status)][1]
    except ValueError:
        return None


def labels() -> list[dict[str, str]]:
    """Every state's label and words, for the dashboard (plus the never-paired one)."""
    rows = [
        {"id": status.value, "label": label, "hint": words or "Online. Messages go out at once."}
        for status, (label, words) in WORDS.items()
    ]
    return [*rows, {"id": "not_paired", "label": NOT_PAIRED, "hint": NOT_PAIRED_REASON}]
