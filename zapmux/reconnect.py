"""Whether a tenant connects again, and when: decided, not done.

:class:`ReconnectPolicy` is a pure function of what happened and the runner's counters;
it returns a :data:`Decision` that the supervisor acts on (as the outbox acts on
``RetryPolicy.decide``). The rules:

- a drop that may pass (``Disconnected``) reconnects after a full-jitter backoff that
  grows with each attempt, and starts over once the connection had been stable;
- a permanent end (logged out, replaced, banned, failed) gives up: nothing connects
  again until a person starts or pairs the tenant; a logout also wipes the session;
- QR codes that ran out unscanned stop in ``qr_timeout`` until a person asks;
- a node taking a tenant over (at start, or from a dead node) connects it when it is
  paired and wanted running, and otherwise leaves it stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from zapmux.backoff import Backoff
from zapmux.events import (
    Banned,
    Disconnected,
    Failed,
    LoggedOut,
    PermanentDisconnect,
    QrTimeout,
    Replaced,
)
from zapmux.states import PERMANENT, Status, Wanted

#: The end each permanent disconnect leaves the tenant in (any other: ``failed``).
PERMANENT_STATUS: dict[type[PermanentDisconnect], Status] = {
    LoggedOut: Status.LOGGED_OUT,
    Replaced: Status.REPLACED,
    Banned: Status.BANNED,
    Failed: Status.FAILED,
}
QR_UNSCANNED = "QR code not scanned in time"
#: What ended a connection: the events the policy decides on.
Ending = Disconnected | PermanentDisconnect | QrTimeout


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect now: this node took over a paired tenant that is wanted running."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The drop may pass: connect again after ``delay`` seconds, as retry ``attempt``.

    ``reason`` (and ``detail``, the raw error behind it) is the tenant's ``last_error``
    meanwhile."""

    delay: float
    attempt: int
    reason: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class GiveUp:
    """A permanent end: stay in ``status`` until a person starts or pairs the tenant.

    ``wipe``: the device was unlinked, so its stored session is worthless."""

    status: Status
    reason: str
    wipe: bool = False


@dataclass(frozen=True, slots=True)
class StayStopped:
    """Stay closed in ``status`` until a person asks; ``reason``, when given, becomes
    the tenant's ``last_error`` (else the last one stays)."""

    status: Status
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class KeepAsIs:
    """Change nothing: the tenant was stopped by a person, or waits in an end only a
    person clears."""


Decision = Connect | Reconnect | GiveUp | StayStopped | KeepAsIs


class ReconnectPolicy:
    """Decides from the event, the retries so far and how long the connection lasted.

    ``rng`` draws the jitter (the module's generator when None).
    """

    def __init__(
        self, backoff: Backoff, stable_after_s: float, rng: random.Random | None = None
    ) -> None:
        self.backoff = backoff
        self.stable_after_s = stable_after_s
        self.rng = rng

    def decide(self, event: Ending, attempts: int, connected_for: float | None) -> Decision:
        """After the connection ended with ``event``.

        ``attempts`` counts the retries since the last stable connection;
        ``connected_for`` is how long the connection that ended had been up (None when
        it never came up)."""
        if isinstance(event, QrTimeout):
            return StayStopped(Status.QR_TIMEOUT, QR_UNSCANNED)
        if isinstance(event, PermanentDisconnect):
            status = PERMANENT_STATUS.get(type(event), Status.FAILED)
            return GiveUp(status, event.reason, wipe=status == Status.LOGGED_OUT)
        if connected_for is not None and connected_for >= self.stable_after_s:
            attempts = 0  # it had been fine for a while: the backoff starts over
        attempt = attempts + 1
        delay = self.backoff.delay(attempt, self.rng)
        return Reconnect(delay, attempt, event.reason, event.detail)

    @staticmethod
    def decide_resume(status: Status, wanted: str, paired: bool) -> Decision:
        """When this node takes a tenant over in ``status``, ``wanted`` running or
        stopped, with a stored session (``paired``) or none."""
        if status in PERMANENT or wanted != Wanted.RUNNING:
            return KeepAsIs()
        if paired:
            return Connect()
        if status == Status.QR_TIMEOUT:
            return KeepAsIs()
        return StayStopped(Status.STOPPED)  # unpaired: pairing starts when asked
