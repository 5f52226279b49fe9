"""Durable webhook delivery: claim, sign, post, decide, repeat.

Every event for a webhook is first a row in the outbox (written in the same
transaction as what caused it), then POSTed by the :class:`Deliverer` at least once,
in order per chat, with a stable ``X-Zapmux-Delivery`` id. Failures that may pass
(connection errors, timeouts, 408, 429, 5xx) retry with full-jitter backoff until the
delivery is ``max_age`` old; other 4xx go straight to ``dead``, where they stay
listed and can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from zapmux.backoff import Backoff
from zapmux.config import Settings
from zapmux.store.base import Store
from zapmux.store.records import Delivery

log = logging.getLogger("zapmux.outbox")
RETRYABLE_STATUS = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def new_delivery(
    *,
    event: str,
    url: str,
    payload: dict[str, Any],
    chat_key: str,
    tenant_id: str | None,
    secret: str | None,
) -> Delivery:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Delivery(
        delivery_id=uuid.uuid4().hex,
        event=event,
        url=url,
        body=body,
        chat_key=chat_key,
        tenant_id=tenant_id,
        secret=secret,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an attempt: deliver done, retry after ``delay``, or dead."""

    status: str  # delivered | pending | dead
    delay: float = 0.0


class RetryPolicy:
    """Decides from the attempt's outcome and the delivery's age."""

    def __init__(self, backoff: Backoff, max_age_s: float) -> None:
        self.backoff = backoff
        self.max_age_s = max_age_s

    def decide(self, delivery: Delivery, attempts: int, http_status: int | None) -> Decision:
        if http_status is not None and 200 <= http_status < 300:
            return Decision("delivered")
        retryable = http_status is None or http_status >= 500 or http_status in RETRYABLE_STATUS
        delay = self.backoff.delay(attempts)
        if not retryable or time.time() + delay - delivery.created_at > self.max_age_s:
            return Decision("dead")
        return Decision("pending", delay)


class Deliverer:
    """Posts due outbox rows; one background loop per node, many requests in flight."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.policy = RetryPolicy(
            Backoff(settings.delivery_backoff_base_s, settings.delivery_backoff_cap_s),
            settings.delivery_max_age_s,
        )
        self.wakeup = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        self.stats = {"delivered": 0, "failed_attempts": 0, "dead": 0}

    def wake(self) -> None:
        self.wakeup.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.settings.delivery_concurrency * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self.session = session
            try:
                await self._loop()
            finally:
                for task in list(self.in_flight):
                    task.cancel()
                await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def _loop(self) -> None:
        limit = self.settings.delivery_concurrency
        while True:
            self.wakeup.clear()
            free = limit - len(self.in_flight)
            claimed = await self.store.claim_deliveries(free, self._lock_s()) if free > 0 else []
            for delivery in claimed:
                task = asyncio.create_task(
                    self._attempt(delivery), name=f"deliver-{delivery.delivery_id}"
                )
                self.in_flight.add(task)
                task.add_done_callback(self._finished)
            if len(claimed) < free:
                await self._sleep()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        if not task.cancelled() and task.exception():
            log.error("❌ delivery task failed", exc_info=task.exception())
        self.wakeup.set()  # a finished delivery may unblock the next one of its chat

    def _lock_s(self) -> float:
        return self.settings.delivery_timeout_s + 30.0

    async def _sleep(self) -> None:
        due = await self.store.next_delivery_due()
        wait = 1.0 if due is None else min(max(due - time.time(), 0.01), 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), wait)

    async def _attempt(self, delivery: Delivery) -> None:
        http_status, error = await self._post(delivery)
        attempts = delivery.attempts + 1
        decision = self.policy.decide(delivery, attempts, http_status)
        if decision.status == "delivered":
            self.stats["delivered"] += 1
            log.info("✅ webhook %s delivered to %s", delivery.event, delivery.url)
        else:
            self.stats["failed_attempts"] += 1
            self.stats["dead"] += decision.status == "dead"
            log.warning(
                "❌ webhook %s to %s failed (%s)%s",
                delivery.event,
                delivery.url,
                error,
                "; dead" if decision.status == "dead" else f"; retry in {decision.delay:.1f}s",
            )
        await self.store.finish_delivery(
            delivery.delivery_id,
            status=decision.status,
            attempts=attempts,
            last_error=None if decision.status == "delivered" else error,
            next_attempt_at=time.time() + decision.delay if decision.status == "pending" else None,
        )

    async def _post(self, delivery: Delivery) -> tuple[int | None, str]:
        assert self.session is not None
        body = delivery.body.encode()
        try:
            async with self.session.post(
                delivery.url, data=body, headers=self.headers(delivery, body)
            ) as resp:
                await resp.read()
                return resp.status, f"HTTP {resp.status}"
        except TimeoutError:
            return None, f"timed out after {self.settings.delivery_timeout_s:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    def headers(self, delivery: Delivery, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "zapmux",
            "X-Zapmux-Delivery": delivery.delivery_id,
            "X-Zapmux-Event": delivery.event,
            "X-Zapmux-Timestamp": timestamp,
        }
        secret = delivery.secret or self.settings.webhook_secret
        if secret:
            headers["X-Zapmux-Signature"] = sign(secret, timestamp, body)
        return headers
