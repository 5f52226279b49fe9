"""The retry rules as the outbox applies them: which answers retry, for how long."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from zapmux.backoff import Backoff
from zapmux.outbox import RetryPolicy, new_delivery, parse_retry_after, sign

DAY = 86400.0


def _policy() -> RetryPolicy:
    return RetryPolicy(Backoff(1.0, 300.0), DAY)


def _delivery(age_s: float = 0.0):  # type: ignore[no-untyped-def]
    d = new_delivery(
        event="message",
        target="flask",
        payload={},
        chat_key="c",
        tenant_id="t",
    )
    d.created_at = time.time() - age_s
    return d


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert _policy().decide(_delivery(), 1, status).status == "delivered"


@pytest.mark.parametrize("status", [None, 408, 425, 429, 500, 502, 503, 504])
def test_transient_failures_retry(status: int | None) -> None:
    decision = _policy().decide(_delivery(), 1, status)
    assert decision.status == "pending" and 0 <= decision.delay <= 1.0


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 413, 422])
def test_other_answers_are_dead_at_once(status: int) -> None:
    assert _policy().decide(_delivery(), 1, status).status == "dead"


def test_backoff_grows_from_1s_to_5min_with_full_jitter() -> None:
    backoff = Backoff(1.0, 300.0)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 9, 10, 20)] == [1, 2, 4, 256, 300, 300]
    rng = random.Random(7)
    delays = [backoff.delay(10, rng) for _ in range(200)]
    assert all(0 <= d <= 300 for d in delays) and max(delays) > 200 and min(delays) < 100


def test_retries_stop_when_the_delivery_is_a_day_old() -> None:
    assert _policy().decide(_delivery(age_s=DAY - 3600), 5, 503).status == "pending"
    assert _policy().decide(_delivery(age_s=DAY + 1), 30, 503).status == "dead"


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert _policy().decide(_delivery(), 1, 429, retry_after=120).delay == 120
    assert _policy().decide(_delivery(), 1, 503, retry_after=9999).delay == 300
    assert parse_retry_after("30") == 30
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (parse_retry_after(when) or 0) <= 61


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # The documented example (docs/delivery.md), computed independently.
    assert sign("s3cret", "1700000000", b'{"a":1}') == (
        "sha256=" + __import__("hmac").new(b"s3cret", b'1700000000.{"a":1}', "sha256").hexdigest()
    )
