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
import email.utils
import hashlib
import heapq
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from zapmux.backoff import Backoff
from zapmux.config import Settings
from zapmux.ids import time_ordered_hex
from zapmux.metrics import Metrics
from zapmux.states import DeliveryStatus
from zapmux.store.base import OutboxStore, TenantStore
from zapmux.store.records import ClaimCursor, Delivery, DeliveryResult
from zapmux.webhook_client import WebhookClient
from zapmux.webhook_url import CheckedResolver, reaches_private, webhook_resolver

log = logging.getLogger("zapmux.outbox")
RETRYABLE_STATUS = frozenset({408, 425, 429})
POLL_S = 1.0  # how often an idle deliverer looks for rows no wake-up told it about
#: A look at every pending row takes at most this share of the time: a long one (rows
#: piled up behind webhooks that are down) comes that much less often than POLL_S.
LOOK_SHARE = 0.02


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


FLASK = "flask"


def tenant_target(tenant_id: str) -> str:
    """The target "tenant X's webhook" (for messages: where X's messages go now)."""
    return f"tenant:{tenant_id}"


def pinned_target(url: str) -> str:
    """A target that is this URL and nothing else (a relay with an explicit destination)."""
    return f"url:{url}"


#: ``json.dumps(payload, ensure_ascii=False, separators=(",", ":"))``, the encoder built
#: once: every incoming message's webhook body is written here.
_BODY = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def new_delivery(
    *,
    event: str,
    target: str,
    payload: dict[str, Any],
    chat_key: str,
    tenant_id: str | None,
) -> Delivery:
    body = _BODY(payload)
    return Delivery(
        delivery_id=time_ordered_hex(),
        event=event,
        target=target,
        body=body,
        chat_key=chat_key,
        tenant_id=tenant_id,
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one attempt POSTs, the secret it signs with, and whether it may reach a
    loopback or private address (the operator's own network; webhook_url.py)."""

    url: str
    secret: str | None
    private_ok: bool = True


class Targets:
    """Turns a delivery's target into a URL and a secret, at each attempt.

    ``flask`` is ``{FLASK_URL}/webhook/whatsapp`` as configured now; ``tenant:X`` is X's
    webhook as set now — for a message, X's messages go to the Flask URL when X has no
    webhook (any more), while the other events have nowhere to go then; ``url:U`` is U.
    Only a tenant's webhook may be kept from private addresses (who set it decides):
    the others are the operator's.
    A tenant created after the delivery is another tenant of the same name: it
    inherits nothing.
    """

    def __init__(self, settings: Settings, tenants: TenantStore) -> None:
        self.settings = settings
        self.tenants = tenants

    @property
    def flask(self) -> Endpoint:
        return Endpoint(f"{self.settings.flask_url}/webhook/whatsapp", self.settings.webhook_secret)

    async def resolve(self, delivery: Delivery) -> Endpoint | None:
        """Where the next attempt goes; None when the target is gone."""
        kind, _, rest = delivery.target.partition(":")
        if kind == "url":
            return Endpoint(rest, self.settings.webhook_secret)
        if kind == "tenant":
            tenant = await self.tenants.get_tenant(rest)
            if tenant and tenant.webhook_url and tenant.created_at <= delivery.created_at:
                url = tenant.webhook_url
                private_ok = reaches_private(
                    url, tenant.webhook_by, self.settings.allowed_webhook_hosts
                )
                return Endpoint(url, tenant.webhook_secret or self.flask.secret, private_ok)
            if delivery.event != "message":
                return None
        return self.flask

    def stale(self, delivery: Delivery) -> bool:
        """Pinned to a URL that is not the default target any more."""
        kind, _, rest = delivery.target.partition(":")
        return kind == "url" and rest != self.flask.url


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an attempt: deliver done, retry after ``delay``, or dead."""

    status: DeliveryStatus
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one POST came back with: an HTTP status, or None when none came back."""

    http_status: int | None
    error: str
    retry_after: float | None = None  # the receiver's Retry-After, in seconds


class RetryPolicy:
    """Decides from the attempt's outcome and the delivery's age.

    2xx: delivered. No answer (connection error, timeout), 408, 425, 429 and 5xx:
    retry after a full-jitter backoff (at least the receiver's ``Retry-After``, up to
    the cap) while the delivery is younger than ``max_age_s``. Anything else (other
    4xx, and 3xx: redirects are not followed) is dead at once.
    """

    def __init__(self, backoff: Backoff, max_age_s: float) -> None:
        self.backoff = backoff
        self.max_age_s = max_age_s

    @staticmethod
    def retryable(http_status: int | None) -> bool:
        return http_status is None or http_status >= 500 or http_status in RETRYABLE_STATUS

    def decide(
        self,
        delivery: Delivery,
        attempts: int,
        http_status: int | None,
        retry_after: float | None = None,
    ) -> Decision:
        if http_status is not None and 200 <= http_status < 300:
            return Decision(DeliveryStatus.DELIVERED)
        delay = self.backoff.delay(attempts)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff.cap))
        if (
            not self.retryable(http_status)
            or time.time() + delay - (delivery.replayed_at or delivery.created_at) > self.max_age_s
        ):
            return Decision(DeliveryStatus.DEAD)
        return Decision(DeliveryStatus.PENDING, delay)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


#: The statuses that tell whether webhooks are behind or failing: counted at every ask.
ATTENTION = (DeliveryStatus.PENDING, DeliveryStatus.DEAD)


class OutboxCounts:
    """The outbox's rows by status, as ``/status``, ``/metrics`` and the dashboard show
    them, without a walk through the whole outbox at each ask.

    Pending and dead rows are counted every time (their own ranges of an index: what
    they count is the news). Delivered rows are kept ``delivered_retention_s`` (a
    week) for listing and replay — a million took 130 ms to count on SQLite, at each
    ask — so their count is taken at most every ``max_age_s``, in the background: an
    ask meanwhile gets the last one (only the first ask waits for it).
    """

    def __init__(self, store: OutboxStore, max_age_s: float = 30.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._delivered = 0
        self._counted_at: float | None = None
        self._recount: asyncio.Task[None] | None = None

    async def current(self) -> dict[str, int]:
        counts = await self.store.count_deliveries(ATTENTION)
        if self._counted_at is None:
            await self._count_delivered()
        elif time.monotonic() - self._counted_at > self.max_age_s and self._recount is None:
            self._recount = asyncio.create_task(self._count_delivered(), name="outbox-count")
            self._recount.add_done_callback(self._recounted)
        if self._delivered:
            counts[DeliveryStatus.DELIVERED.value] = self._delivered
        return counts

    async def _count_delivered(self) -> None:
        found = await self.store.count_deliveries((DeliveryStatus.DELIVERED,))
        self._delivered = found.get(DeliveryStatus.DELIVERED, 0)
        self._counted_at = time.monotonic()

    def _recounted(self, task: asyncio.Task[None]) -> None:
        self._recount = None
        if not task.cancelled() and task.exception():  # the store is away: the next ask
            log.warning("counting delivered rows failed: %r", task.exception())


class Deliverer:
    """Posts due outbox rows; one background loop per node, many requests in flight.

    Outcomes are written by the loop, in batches, before it claims more; if the
    process dies first, the delivery is simply attempted again (at least once).
    A claimed row is locked for the lease time (``lease_seconds``, at least
    ``delivery_timeout_s + 5``). If this process
    dies meanwhile, the row is claimable again when the lock ends; on a single-node
    store (SQLite) every lock left at start belongs to a dead process and is released
    at once, and on a clean stop the rows still in flight are released too.
    """

    def __init__(
        self,
        settings: Settings,
        store: OutboxStore,
        metrics: Metrics | None = None,
        tenants: TenantStore | None = None,
        resolver: CheckedResolver | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        # how webhook hosts are looked up (webhook_url.py; a test may bring its own names)
        self.resolver = resolver or webhook_resolver()
        self.settings = settings
        self.store = store
        if tenants is None:  # where each tenant's webhook is looked up (at each attempt)
            assert isinstance(store, TenantStore), "a Deliverer needs the tenants' store"
            tenants = store
        self.targets = Targets(settings, tenants)
        self.policy = RetryPolicy(
            Backoff(settings.delivery_backoff_base_s, settings.delivery_backoff_cap_s),
            settings.delivery_max_age_s,
        )
        self.store_backoff = Backoff(0.2, 10.0)
        self.wakeup = asyncio.Event()
        self.in_flight: dict[asyncio.Task[None], str] = {}
        self.done: list[DeliveryResult] = []  # outcomes not yet written
        # heap: when the retries this node decided are due, and of which chat
        self.retries: list[tuple[float, str]] = []
        # What the next claim may skip: rows up to ``scanned`` (None: look at all), and
        # the last look at all (``scanned_at``, and how long it took); chats whose
        # delivery has finished, or whose retry is due.
        self.scanned: int | None = None
        self.scanned_at = 0.0
        self.look_s = 0.0
        self.rescan = False
        self.finished_chats: set[str] = set()
        self.http: WebhookClient | None = None

    def wake(self) -> None:
        """Something changed in the outbox (a replay, a discard): look at every row."""
        self.rescan = True
        self.wakeup.set()

    def queued(self) -> None:
        """This node has just queued rows (committed): they are the newest ones."""
        self.wakeup.set()

    async def prune_forever(self, every_s: float = 600.0) -> None:
        """Delivered rows are kept ``delivered_retention_s`` (to list and replay), then
        removed, so the outbox does not grow without end. Pending and dead rows stay."""
        while True:
            cutoff = time.time() - self.settings.delivered_retention_s
            try:
                removed = await self.store.purge_delivered(cutoff)
            except Exception:  # the store is away: the next round tries again
                log.exception("❌ pruning the outbox failed")
                removed = 0
            if removed:
                log.info("outbox: removed %d deliveries delivered before the retention", removed)
            await asyncio.sleep(every_s)

    async def run(self) -> None:
        if self.store.single_node:
            released = await self.store.release_deliveries()
            if released:
                log.info("🔄 %d deliveries interrupted by the last stop will be retried", released)
        self.http = WebhookClient(self.settings.delivery_timeout_s, self.resolver)
        try:
            await self._loop()
        finally:
            await self._abandon_in_flight()
            await self.http.close()
            await self.resolver.close()

    async def _abandon_in_flight(self) -> None:
        """On stop: write what finished, cancel the rest and unlock it for the next start."""
        ids = list(self.in_flight.values())
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        finished = {r.delivery_id for r in self.done}
        with contextlib.suppress(Exception):
            await asyncio.shield(self._flush())
        with contextlib.suppress(Exception):
            await asyncio.shield(
                self.store.release_deliveries([i for i in ids if i not in finished])
            )

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._tick()
                failures = 0
            except Exception as exc:  # the store is down or busy: wait, never die
                failures += 1
                self.metrics.inc("outbox_store_errors_total")
                delay = self.store_backoff.ceiling(failures)
                log.error("❌ outbox unavailable (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _tick(self) -> None:
        """Write the outcomes gathered so far and claim what the free slots can take.

        Both in one transaction whatever their size, so the busier the outbox the
        more each round trip carries. The outcomes go first: a delivered row unblocks
        the next row of its chat for the claim.
        """
        self.wakeup.clear()
        free = self.settings.delivery_concurrency - len(self.in_flight)
        batch, self.done = self.done, []
        claimed: list[Delivery] = []
        if batch or free > 0:
            claimed = await self._round(batch, max(free, 0))
        for delivery in claimed:
            task = asyncio.create_task(
                self._attempt(delivery), name=f"deliver-{delivery.delivery_id}"
            )
            self.in_flight[task] = delivery.delivery_id
            task.add_done_callback(self._finished)
        if len(claimed) < free or free <= 0:
            await self._sleep()

    async def _round(self, batch: list[DeliveryResult], free: int) -> list[Delivery]:
        """One finish-and-claim. It looks at every pending row only when something
        may have changed that the deliverer was not told of (at start, when woken by
        ``wake``, and once a second for what other nodes did — less often when such a
        look takes long: ``LOOK_SHARE``); else at the rows queued since, the chats it
        finished and those whose retry is due."""
        began = time.time()
        while self.retries and self.retries[0][0] <= began:
            self.finished_chats.add(heapq.heappop(self.retries)[1])
        full = (
            self.scanned is None
            or self.rescan
            or began - self.scanned_at >= max(POLL_S, self.look_s / LOOK_SHARE)
        )
        # A chat gives one row at most: as many chats as there are free slots this
        # round, the others the next (after a look at all, which may stop at its limit
        # before their rows: they are asked for by name then).
        chats: list[str] = []
        since = None
        if not full and self.scanned is not None:
            waiting = list(self.finished_chats)
            chats, self.finished_chats = waiting[:free], set(waiting[free:])
            since = ClaimCursor(self.scanned, tuple(chats))
        try:
            claimed = await self.store.finish_and_claim(batch, free, self._lock_s(), since)
        except BaseException:
            self.done[:0] = batch  # written on the next round; the rows stay locked
            self.finished_chats.update(chats)
            raise
        if claimed.last_id is not None:  # (a look at all that stopped at its limit
            self.scanned = claimed.last_id  # leaves what the cursor says as it was)
        if full:
            self.rescan, self.scanned_at, self.look_s = False, began, time.time() - began
        return claimed.deliveries

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.pop(task, None)
        if not task.cancelled() and task.exception():
            log.error("❌ delivery task failed", exc_info=task.exception())
        self.wakeup.set()  # a finished delivery may unblock the next one of its chat

    def _lock_s(self) -> float:
        """How long a claim holds a row: the lease, so that when this node dies another
        takes the row over as soon as it takes the tenants over; never less than one
        attempt's timeout (plus a margin), so a slow POST is not sent twice meanwhile."""
        return max(self.settings.lease_seconds, self.settings.delivery_timeout_s + 5.0)

    async def _flush(self) -> None:
        if not self.done:
            return
        batch, self.done = self.done, []
        try:
            await self.store.finish_deliveries(batch)
        except BaseException:
            self.done[:0] = batch
            raise

    async def _sleep(self) -> None:
        """Until woken (new rows, a finished attempt), a retry of ours is due, or a
        second has passed: the poll that finds what other nodes queued or gave up."""
        if self.wakeup.is_set():
            return
        wait = POLL_S
        if self.retries and len(self.in_flight) < self.settings.delivery_concurrency:
            wait = min(max(self.retries[0][0] - time.time(), 0.01), POLL_S)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that
        # arrives as the wakeup does, and the deliverer would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.wakeup.wait()

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            endpoint = await self.targets.resolve(delivery)
        except Exception as exc:  # the store is away: an attempt that may pass later
            endpoint, outcome = None, Outcome(None, f"cannot resolve {delivery.target}: {exc!r}")
        else:
            outcome = (
                await self._post(delivery, endpoint)
                if endpoint
                else Outcome(400, f"{delivery.target} has no webhook any more")
            )
        attempts = delivery.attempts + 1
        decision = self.policy.decide(delivery, attempts, outcome.http_status, outcome.retry_after)
        # an attempt that will be retried failed all the same
        counted = "failed" if decision.status == DeliveryStatus.PENDING else decision.status
        self.metrics.inc("webhook_attempts_total", outcome=counted)
        where = endpoint.url if endpoint else delivery.target
        if decision.status == DeliveryStatus.DELIVERED:
            self.metrics.observe("delivery_latency_seconds", time.time() - delivery.created_at)
            log.info("✅ webhook %s delivered to %s", delivery.event, where)
        else:
            log.warning(
                "❌ webhook %s to %s failed (%s)%s",
                delivery.event,
                where,
                outcome.error,
                "; dead"
                if decision.status == DeliveryStatus.DEAD
                else f"; retry in {decision.delay:.1f}s",
            )
        retry_at = None
        if decision.status == DeliveryStatus.PENDING:
            retry_at = time.time() + decision.delay
            heapq.heappush(self.retries, (retry_at, delivery.chat_key))
        else:  # the next row of its chat may go now
            self.finished_chats.add(delivery.chat_key)
        self.done.append(
            DeliveryResult(
                delivery.delivery_id,
                decision.status,
                attempts,
                None if decision.status == DeliveryStatus.DELIVERED else outcome.error,
                retry_at,
            )
        )

    async def _post(self, delivery: Delivery, endpoint: Endpoint) -> Outcome:
        assert self.http is not None
        body = delivery.body.encode()
        try:
            answer = await self.http.post(
                endpoint.url,
                body,
                self.headers(delivery, body, endpoint.secret),
                endpoint.private_ok,
            )
        except TimeoutError:
            return Outcome(None, f"timed out after {self.settings.delivery_timeout_s:g}s")
        except (OSError, ValueError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])
        error = f"HTTP {answer.status}"
        if 300 <= answer.status < 400:
            error += " (redirects are not followed: set the final URL)"
        return Outcome(answer.status, error, parse_retry_after(answer.retry_after))

    def headers(self, delivery: Delivery, body: bytes, secret: str | None) -> dict[str, str]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "zapmux",
            "X-Zapmux-Delivery": delivery.delivery_id,
            "X-Zapmux-Event": delivery.event,
            "X-Zapmux-Timestamp": timestamp,
        }
        if secret:
            headers["X-Zapmux-Signature"] = sign(secret, timestamp, body)
        return headers
