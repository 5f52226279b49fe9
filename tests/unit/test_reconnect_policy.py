"""The reconnect policy as a pure function: what ended a connection → what happens next."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

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
from zapmux.reconnect import (
    Connect,
    Decision,
    Ending,
    GiveUp,
    KeepAsIs,
    Reconnect,
    ReconnectPolicy,
    StayStopped,
)
from zapmux.states import PERMANENT, Status

STABLE_AFTER_S = 60.0


class Highest(random.Random):
    """Jitter that always draws the top of its range, so delays are the ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass(frozen=True, slots=True)
class Unheard(PermanentDisconnect):
    """A permanent end zapmux has no state of its own for."""

    reason: str = "something new"


def _policy(rng: random.Random | None = None) -> ReconnectPolicy:
    return ReconnectPolicy(Backoff(1.0, 60.0), STABLE_AFTER_S, rng or Highest())


@pytest.mark.parametrize(
    ("event", "attempts", "connected_for", "decision"),
    [
        # a drop that may pass: the n-th retry waits up to base·2ⁿ⁻¹, at most the cap
        (Disconnected("network down"), 0, None, Reconnect(1.0, 1, "network down")),
        (Disconnected("timeout", "raw"), 2, None, Reconnect(4.0, 3, "timeout", "raw")),
        (Disconnected("x"), 10, None, Reconnect(60.0, 11, "x")),
        # a connection that had not lasted keeps counting; a stable one starts over
        (Disconnected("x"), 3, STABLE_AFTER_S - 0.1, Reconnect(8.0, 4, "x")),
        (Disconnected("x"), 10, STABLE_AFTER_S, Reconnect(1.0, 1, "x")),
        (Disconnected("x"), 10, 3600.0, Reconnect(1.0, 1, "x")),
        # permanent ends give up; only a logout wipes the session
        (LoggedOut(), 0, None, GiveUp(Status.LOGGED_OUT, "logged out", wipe=True)),
        (
            Replaced(),
            4,
            10.0,
            GiveUp(Status.REPLACED, "another client took over this session"),
        ),
        (Banned(), 0, 3600.0, GiveUp(Status.BANNED, "banned by WhatsApp")),
        (Failed("client outdated"), 1, None, GiveUp(Status.FAILED, "client outdated")),
        (Unheard(), 0, None, GiveUp(Status.FAILED, "something new")),
        # unscanned QR codes wait for a person
        (QrTimeout(), 0, None, StayStopped(Status.QR_TIMEOUT, "QR code not scanned in time")),
        (QrTimeout(), 5, None, StayStopped(Status.QR_TIMEOUT, "QR code not scanned in time")),
    ],
)
def test_what_ends_a_connection_decides_what_follows(
    event: Ending, attempts: int, connected_for: float | None, decision: Decision
) -> None:
    assert _policy().decide(event, attempts, connected_for) == decision


@pytest.mark.parametrize(
    ("status", "wanted", "paired", "decision"),
    [
        (Status.CONNECTED, "running", True, Connect()),
        (Status.RECONNECTING, "running", True, Connect()),
        (Status.STOPPED, "running", True, Connect()),
        (Status.QR_TIMEOUT, "running", True, Connect()),
        # unpaired: nothing to connect with; pairing starts when a person asks
        (Status.STOPPED, "running", False, StayStopped(Status.STOPPED)),
        (Status.AWAITING_QR, "running", False, StayStopped(Status.STOPPED)),
        (Status.CONNECTING, "running", False, StayStopped(Status.STOPPED)),
        (Status.QR_TIMEOUT, "running", False, KeepAsIs()),
        # stopped by a person: stays so, paired or not
        (Status.CONNECTED, "stopped", True, KeepAsIs()),
        (Status.STOPPED, "stopped", False, KeepAsIs()),
    ]
    + [(status, "running", True, KeepAsIs()) for status in sorted(PERMANENT)],
)
def test_a_node_taking_a_tenant_over_connects_only_what_should_run(
    status: Status, wanted: str, paired: bool, decision: Decision
) -> None:
    assert _policy().decide_resume(status, wanted, paired) == decision


def test_reconnect_delays_are_full_jitter_under_the_ceiling() -> None:
    policy = _policy(random.Random(7))
    delays = []
    for _ in range(200):
        decision = policy.decide(Disconnected("x"), 9, None)
        assert isinstance(decision, Reconnect) and decision.attempt == 10
        delays.append(decision.delay)
    assert all(0 <= d <= 60.0 for d in delays) and max(delays) > 40 and min(delays) < 20
