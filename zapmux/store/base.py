"""The store interface: everything zapmux persists, whatever the database.

Narrow interfaces, one per concern (as whatsmeow's ``store.go``), and ``Store``, all
of them. Two implementations: ``sql.SqlStore`` on SQLite and PostgreSQL, and
``memory.MemoryStore`` (nothing kept); the contract tests in
``tests/contract/test_store_contract.py`` hold every backend to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from zapmux.store.records import (
    ClaimCursor,
    Claimed,
    CloudAccount,
    DeadInbound,
    Delivery,
    DeliveryResult,
    IdempotentAnswer,
    InboxMessage,
    MessageRecord,
    OptOut,
    SandboxQr,
    SandboxSession,
    TenantRecord,
)

#: What a change notice names: the key that changed (a tenant id), or None when
#: anything of its topic may have changed (the feed was interrupted, notices were lost).
ChangeCallback = Callable[[str | None], None]


class ChangeFeed:
    """Changes that other nodes commit to a shared store, as they happen.

    Topics: :data:`TENANT_CHANGES` (a tenant was created, updated or deleted; key: its
    id), :data:`OPT_OUT_CHANGES` (a number opted out of a tenant, or that was lifted;
    key: the tenant's id) and :data:`SANDBOX_CHANGES` (something was left for, or
    paired, a sandbox tenant's session; key: its id). A store no other node shares (SQLite) has nothing
    to tell: this default calls nothing, ever."""

    async def subscribe(self, topic: str, callback: ChangeCallback) -> None:
        """Call ``callback(key)`` (in the event loop; it must not block) for each change
        of ``topic`` another node commits from now on; returns once that holds."""


TENANT_CHANGES = "tenant"
SANDBOX_CHANGES = "sandbox"
OPT_OUT_CHANGES = "opt-out"


class TenantStore(ABC):
    """Tenants: their settings and last known state."""

    @abstractmethod
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord: ...

    @abstractmethod
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    @abstractmethod
    async def tenant_by_token_hash(self, token_hash: str) -> TenantRecord | None: ...

    @abstractmethod
    async def list_tenants(
        self, after: str | None = None, limit: int | None = None
    ) -> list[TenantRecord]:
        """By id; ``after``: the last id of the previous page; ``limit``: a page's size."""

    @abstractmethod
    async def count_tenants(self) -> dict[str, int]:
        """How many tenants are in each status."""

    @abstractmethod
    async def update_tenant(self, tenant_id: str, **fields: Any) -> bool: ...

    @abstractmethod
    async def delete_tenant(self, tenant_id: str) -> bool: ...


class LeaseStore(ABC):
    """Which node runs which tenant, and where each node is reached."""

    @abstractmethod
    async def acquire_leases(self, node: str, lease_s: float, limit: int) -> list[str]:
        """Take (or renew) tenants that are unowned, expired, or already ours."""

    @abstractmethod
    async def heartbeat(self, node: str, url: str) -> None:
        """Say this node is alive and where other nodes reach it."""

    @abstractmethod
    async def node_url(self, node: str, max_age_s: float) -> str | None:
        """The URL of a node whose heartbeat is recent, else None."""

    @abstractmethod
    async def live_nodes(self, max_age_s: float) -> list[tuple[str, str]]:
        """(id, URL) of every node whose heartbeat is recent."""

    @abstractmethod
    async def tenant_owner(self, tenant_id: str) -> tuple[str | None, float] | None:
        """(owner node, lease end) of a tenant; None when there is no such tenant."""

    @abstractmethod
    async def acquire_lease(self, node: str, tenant_id: str, lease_s: float) -> bool:
        """Take one tenant when it is unowned or its lease ran out."""

    @abstractmethod
    async def release_leases(self, node: str, tenant_ids: Sequence[str] | None = None) -> None: ...


class MessageStore(ABC):
    """The message log, which is also every tenant's send queue.

    Writes here and elsewhere that take ``incarnation`` land only while the tenant
    exists in that life (else ``TenantNotFound`` and nothing written): see
    ``store.guard``.
    """

    @abstractmethod
    async def add_message(
        self,
        message: MessageRecord,
        incarnation: str | None = None,
        key: IdempotentAnswer | None = None,
    ) -> MessageRecord:
        """Log ``message``; with ``key``, remember that Idempotency-Key's answer in the
        same transaction."""

    @abstractmethod
    async def record_incoming(
        self,
        message: MessageRecord,
        deliveries: Sequence[Delivery],
        incarnation: str | None = None,
    ) -> bool:
        """Log an incoming message and its webhook deliveries in one transaction.

        False (and nothing written) when this message id was already recorded."""

    @abstractmethod
    async def get_message(self, tenant_id: str, message_id: str) -> MessageRecord | None: ...

    @abstractmethod
    async def list_messages(
        self,
        tenant_id: str,
        direction: str | None = None,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
    ) -> list[MessageRecord]:
        """Newest first; ``before`` is the ``id`` cursor of an earlier page's last row."""

    @abstractmethod
    async def next_queued(self, tenant_id: str) -> MessageRecord | None: ...

    @abstractmethod
    async def count_queued(self, tenant_id: str) -> int: ...

    @abstractmethod
    async def update_message(self, tenant_id: str, message_id: str, **fields: Any) -> bool: ...

    @abstractmethod
    async def mark_sent(
        self,
        tenant_id: str,
        message_id: str,
        wa_id: str,
        answer: IdempotentAnswer | None = None,
        incarnation: str | None = None,
    ) -> None:
        """The engine took the message: keep its id, drop the payload (media can be large);
        ``sent`` unless a receipt that raced the send already moved it further. With
        ``answer``, remember that Idempotency-Key's final answer in the same transaction
        (only while the tenant lives in ``incarnation``)."""

    @abstractmethod
    async def apply_receipt(
        self, tenant_id: str, wa_ids: Sequence[str], status: str, error: str | None = None
    ) -> list[str]:
        """Move sent messages forward (sent → delivered → read, or failed with ``error``);
        the message ids moved."""

    @abstractmethod
    async def fail_interrupted_sends(self, tenant_id: str) -> int:
        """Mark the tenant's half-sent messages failed (its last runner is gone)."""


class MediaStore(ABC):
    """The bytes of received media."""

    @abstractmethod
    async def save_media(
        self,
        tenant_id: str,
        message_id: str,
        mimetype: str,
        filename: str | None,
        data: bytes,
        incarnation: str | None = None,
    ) -> None: ...

    @abstractmethod
    async def get_media(
        self, tenant_id: str, message_id: str
    ) -> tuple[str, str | None, bytes] | None: ...


class OutboxStore(ABC):
    """The webhook outbox: enqueue, claim, finish, list, replay, prune."""

    #: True when no other node can share this store (SQLite): whatever is locked at
    #: start was locked by a process that is gone, so it can be released at once.
    single_node: bool = True

    @abstractmethod
    async def enqueue_deliveries(
        self, deliveries: Sequence[Delivery], incarnation: str | None = None
    ) -> None:
        """Queue deliveries; with ``incarnation``, only while that life of their tenant
        exists (all of them are that tenant's)."""

    @abstractmethod
    async def claim_deliveries(self, limit: int, lock_s: float) -> list[Delivery]:
        """Due pending deliveries, each the oldest pending of its chat, locked for us."""

    @abstractmethod
    async def finish_deliveries(self, results: Sequence[DeliveryResult]) -> None:
        """Record attempts' outcomes (and unlock their rows) in one transaction."""

    async def finish_and_claim(
        self,
        results: Sequence[DeliveryResult],
        limit: int,
        lock_s: float,
        since: ClaimCursor | None = None,
    ) -> Claimed:
        """The deliverer's round (one transaction on SQL): ``finish_deliveries(results)``,
        then claim as ``claim_deliveries(limit, lock_s)`` does. A row finished here
        unblocks the next of its chat for the claim.

        With ``since``, the claim looks only at the heads of ``since.chats`` and at the
        rows queued after ``since.last_id`` (not at every pending row, which may be a
        long queue behind a webhook that is down); rows that became claimable otherwise
        (a lock or a retry's time ran out, unless its chat is named; another node let
        go) wait for a claim without it.
        """
        # Here every claim looks at every row: ``since`` changes nothing.
        await self.finish_deliveries(results)
        claimed = await self.claim_deliveries(limit, lock_s) if limit > 0 else []
        return Claimed(claimed, None)

    @abstractmethod
    async def release_deliveries(self, delivery_ids: Sequence[str] | None = None) -> int:
        """Unlock claimed pending deliveries (all, or these) so they can be claimed now."""

    @abstractmethod
    async def purge_delivered(self, older_than: float) -> int:
        """Forget deliveries delivered before ``older_than``; the count removed."""

    @abstractmethod
    async def list_deliveries(
        self, status: str | None = None, tenant_id: str | None = None, limit: int = 100
    ) -> list[Delivery]: ...

    @abstractmethod
    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    @abstractmethod
    async def retry_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        """Put dead (or one given) deliveries back to pending, due now.

        One given delivery is replayed whatever its state (a delivered one is sent
        again; a pending one waiting for its backoff is tried now) unless it is in
        flight at this moment.
        """

    @abstractmethod
    async def discard_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        """Remove every dead delivery (of one tenant), or one given delivery whatever its
        state unless it is in flight at this moment: a stuck row stops blocking its chat."""

    @abstractmethod
    async def count_deliveries(self, statuses: Sequence[str] | None = None) -> dict[str, int]:
        """How many rows of each status (of ``statuses`` only, when given: a pending or
        dead count reads only those rows, not the delivered ones kept for replay)."""


class IdempotencyStore(ABC):
    """Answers remembered per Idempotency-Key."""

    @abstractmethod
    async def get_idempotent(
        self, tenant_id: str, key: str, max_age_s: float
    ) -> IdempotentAnswer | None: ...

    @abstractmethod
    async def put_idempotent(
        self, answer: IdempotentAnswer, incarnation: str | None = None
    ) -> None: ...

    @abstractmethod
    async def forget_idempotent(self, tenant_id: str, key: str) -> None:
        """Drop a remembered key (its request was refused: nothing was sent)."""


class JidStore(ABC):
    """WhatsApp's answer per phone number, kept a while."""

    @abstractmethod
    async def get_jid(
        self, tenant_id: str, phone: str, max_age_s: float
    ) -> tuple[bool, str | None] | None: ...

    @abstractmethod
    async def put_jid(
        self,
        tenant_id: str,
        phone: str,
        exists_: bool,
        jid: str | None,
        incarnation: str | None = None,
    ) -> None: ...


class DeadInboundStore(ABC):
    """Inbound events that could not be recorded, set aside to list and replay."""

    @abstractmethod
    async def add_dead_inbound(self, tenant_id: str, event: str, error: str) -> int:
        """Set aside an inbound event that could not be recorded; its id."""

    @abstractmethod
    async def list_dead_inbound(
        self, tenant_id: str | None = None, limit: int = 100
    ) -> list[DeadInbound]: ...

    @abstractmethod
    async def get_dead_inbound(self, dead_id: int) -> DeadInbound | None: ...

    @abstractmethod
    async def drop_dead_inbound(self, dead_id: int) -> None:
        """Forget a set-aside event (it was replayed)."""


class CloudStore(ABC):
    """Cloud tenants' credentials (the cloud engine and its webhook)."""

    @abstractmethod
    async def cloud_save(self, account: CloudAccount) -> None:
        """Store (or replace) a tenant's credentials; Conflict when another tenant has
        that phone number id."""

    @abstractmethod
    async def cloud_account(self, tenant_id: str) -> CloudAccount | None: ...

    @abstractmethod
    async def cloud_account_for_number(self, phone_number_id: str) -> CloudAccount | None: ...

    @abstractmethod
    async def cloud_verify_tokens(self) -> list[str]:
        """Every cloud tenant's webhook verify token."""

    @abstractmethod
    async def cloud_forget(self, tenant_id: str) -> None:
        """Drop a tenant's credentials, if any."""


class SandboxStore(DeadInboundStore, ChangeFeed):
    """The sandbox network's state (only the sandbox engine uses it), and where it sets
    aside what it cannot read."""

    single_node: bool = True  # as ``OutboxStore.single_node``

    @abstractmethod
    async def sandbox_session(self, tenant_id: str) -> SandboxSession | None: ...

    @abstractmethod
    async def sandbox_save_session(self, session: SandboxSession) -> None: ...

    @abstractmethod
    async def sandbox_set_network(self, tenant_id: str, down: bool) -> bool: ...

    @abstractmethod
    async def sandbox_wipe(self, tenant_id: str) -> None: ...

    @abstractmethod
    async def sandbox_issue_qr(self, qr: SandboxQr) -> None: ...

    @abstractmethod
    async def sandbox_find_qr(self, code: str) -> SandboxQr | None: ...

    @abstractmethod
    async def sandbox_retire_qr(self, tenant_id: str) -> None: ...

    @abstractmethod
    async def sandbox_add_pair_code(
        self, code: str, tenant_id: str, phone: str, expires_at: float
    ) -> None: ...

    @abstractmethod
    async def sandbox_take_pair_code(self, code: str) -> tuple[str, str, float] | None: ...

    @abstractmethod
    async def sandbox_set_phone(self, phone: str, on_whatsapp: bool) -> None: ...

    @abstractmethod
    async def sandbox_phones(self, phones: Sequence[str]) -> dict[str, bool]: ...

    @abstractmethod
    async def sandbox_deliver_to_phone(
        self, message: InboxMessage, receipt: str | None = None
    ) -> int | None:
        """Put ``message`` in the phone's inbox and, in the same transaction, the
        phone's ``receipt`` event in what waits for the sending tenant (its id)."""

    @abstractmethod
    async def sandbox_inbox(self, phone: str, unread_only: bool = False) -> list[InboxMessage]: ...

    @abstractmethod
    async def sandbox_mark_read(self, phone: str) -> list[InboxMessage]: ...

    @abstractmethod
    async def sandbox_push(self, tenant_id: str, event: str, tell_others: bool = True) -> int:
        """Leave ``event`` for the tenant's session; its id. ``tell_others``: the session
        may run on another node, which is told (``ChangeFeed``, ``SANDBOX_CHANGES``)."""

    @abstractmethod
    async def sandbox_pending(self, tenant_id: str, limit: int = 100) -> list[tuple[int, str]]: ...

    @abstractmethod
    async def sandbox_reset(self) -> None:
        """Forget the whole simulated network."""

    @abstractmethod
    async def sandbox_ack(self, *pending_ids: int) -> None:
        """Forget pending items the tenant's session has handed over."""


class ScheduleStore(ABC):
    """Scheduled sends, cancelling, and finding the question a vote answers
    (``store/sql_schedule.py``); rows of the message log."""

    @abstractmethod
    async def next_scheduled_at(self, node: str) -> float | None:
        """When the earliest scheduled send of a tenant ``node`` runs is due."""

    @abstractmethod
    async def due_scheduled(self, node: str, now: float, limit: int) -> list[MessageRecord]:
        """Scheduled sends due by ``now`` of the tenants ``node`` runs, earliest first."""

    @abstractmethod
    async def promote_scheduled(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Move due scheduled sends, (tenant, message id), to the back of their tenants'
        queues in one go; the ones that were still scheduled."""

    @abstractmethod
    async def cancel_message(self, tenant_id: str, message_id: str) -> str | None:
        """Cancel a scheduled or queued message: the status it was cancelled in, or None
        when it is in any other state."""

    @abstractmethod
    async def claim_queued(self, tenant_id: str, message_id: str, chat: str) -> bool:
        """Mark a queued message ``sending`` (False: it was cancelled meanwhile)."""

    @abstractmethod
    async def last_outgoing(self, tenant_id: str, phones: Sequence[str]) -> MessageRecord | None:
        """The newest message that went out from this tenant to any of these spellings."""

    async def last_question(self, tenant_id: str, phones: Sequence[str]) -> MessageRecord | None:
        """:meth:`last_outgoing` when it is a question (it has answers), else None: what
        a typed answer answers (``polls.py``). Asked for every incoming text."""
        last = await self.last_outgoing(tenant_id, phones)
        return last if last is not None and last.options else None

    @abstractmethod
    async def find_outgoing(self, tenant_id: str, wa_id: str) -> MessageRecord | None:
        """The message this tenant sent that WhatsApp knows as ``wa_id``."""


class OptOutStore(ABC, ChangeFeed):
    """Numbers that asked a tenant to stop (``store/sql_optouts.py``); other nodes' opt-outs
    and lifts come through the change feed (:data:`OPT_OUT_CHANGES`)."""

    @abstractmethod
    async def add_opt_out(self, opt_out: OptOut, incarnation: str | None = None) -> None:
        """Record that a number opted out (only while the tenant lives in ``incarnation``)."""

    @abstractmethod
    async def find_opt_out(self, tenant_id: str, phones: Sequence[str]) -> OptOut | None:
        """The opt-out of any of these spellings of one number."""

    @abstractmethod
    async def opted_out_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (tenant, phone) pairs opted out (phones as stored)."""

    @abstractmethod
    async def list_opt_outs(self, tenant_id: str) -> list[OptOut]: ...

    @abstractmethod
    async def remove_opt_out(self, tenant_id: str, phones: Sequence[str]) -> int:
        """Lift a number's opt-out (any of its spellings); how many were removed."""


class Store(
    TenantStore,
    LeaseStore,
    MessageStore,
    MediaStore,
    OutboxStore,
    IdempotencyStore,
    JidStore,
    CloudStore,
    ScheduleStore,
    OptOutStore,
    SandboxStore,  # and DeadInboundStore and ChangeFeed, which it includes
):
    """Everything zapmux persists. Times are Unix seconds.

    Each part of zapmux is handed the narrow interface it uses (``OutboxStore`` for
    the deliverer, ``SandboxStore`` for the sandbox engine, …); this is all of them.
    """

    @abstractmethod
    async def migrate(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...
