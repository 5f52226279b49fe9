"""Tenant states, and the sets the rest of zapmux reasons with."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    STOPPED = "stopped"  # not running: never started, or stopped by a person
    CONNECTING = "connecting"  # a connection attempt is under way
    AWAITING_QR = "awaiting_qr"  # unpaired: showing QR codes, waiting for a scan
    CONNECTED = "connected"  # online; sends go out at once
    RECONNECTING = "reconnecting"  # dropped for a reason that may pass; backoff timer set
    QR_TIMEOUT = "qr_timeout"  # every QR code expired unscanned; waits for a person
    LOGGED_OUT = "logged_out"  # unlinked; session wiped; needs a new pairing
    REPLACED = "replaced"  # another client took the session
    BANNED = "banned"  # WhatsApp banned the number
    FAILED = "failed"  # cannot go on (client outdated, …); a person must look


#: Ends after which nothing retries by itself.
PERMANENT = frozenset({Status.LOGGED_OUT, Status.REPLACED, Status.BANNED, Status.FAILED})
#: Permanent ends that pairing cannot clear, only a person's start or restart (a
#: logged-out tenant simply pairs again).
NEEDS_RESTART = PERMANENT - {Status.LOGGED_OUT}
#: States in which a send waits in the queue instead of being refused.
WILL_CONNECT = frozenset({Status.CONNECTING, Status.RECONNECTING, Status.CONNECTED})
ALL = tuple(s.value for s in Status)
