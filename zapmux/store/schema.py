"""The tables, one metadata for SQLite and PostgreSQL. Times are Unix seconds (float)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ColumnClause,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    literal_column,
)

from zapmux.states import DeliveryStatus, Status, Wanted

SCHEMA_VERSION = 11
#: What turns a store of an older version into this one (a new store is created whole).
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE outbox ADD COLUMN replayed_at FLOAT"],
    3: [
        "ALTER TABLE tenants ADD COLUMN incarnation VARCHAR(32)",
        "UPDATE tenants SET incarnation = 'migrated'",
    ],  # new tables (inbound_dead) are made by create_all before these steps run
    4: ["ALTER TABLE tenants ADD COLUMN engine VARCHAR(16)"],  # NULL: the server's default
    # A delivery names its target instead of the URL and secret it was written with:
    # the rows queued before go where their tenant's messages go now (issue 15).
    5: [
        "ALTER TABLE outbox ADD COLUMN target TEXT",
        "UPDATE outbox SET target = CASE WHEN tenant_id IS NULL OR event = 'relay'"
        " THEN 'flask' ELSE 'tenant:' || tenant_id END",
        "ALTER TABLE outbox DROP COLUMN url",
        "ALTER TABLE outbox DROP COLUMN secret",
    ],
    6: [
        "ALTER TABLE tenants ADD COLUMN detail TEXT",
        "ALTER TABLE messages ADD COLUMN error_code VARCHAR(32)",
    ],
    # scheduled sends, questions with answers, opt-outs (opt_outs is created whole)
    7: [
        "ALTER TABLE messages ADD COLUMN send_at FLOAT",
        "ALTER TABLE messages ADD COLUMN poll TEXT",
        "CREATE INDEX IF NOT EXISTS ix_messages_scheduled ON messages (status, send_at)",
        "CREATE INDEX IF NOT EXISTS ix_messages_phone ON messages (tenant_id, phone, id)",
        "ALTER TABLE tenants ADD COLUMN opt_out_keywords TEXT",
        "ALTER TABLE sandbox_inbox ADD COLUMN options TEXT",
    ],
    # the last message sent to a number (the question a typed answer answers)
    8: [
        "CREATE INDEX IF NOT EXISTS ix_messages_outgoing"
        " ON messages (tenant_id, direction, phone, id) WHERE direction = 'out'"
    ],
    # who set a tenant's webhook (a tenant token may not reach private addresses)
    9: ["ALTER TABLE tenants ADD COLUMN webhook_by VARCHAR(8)"],
    # incoming messages out of the indexes only outgoing ones are looked up by, and
    # delivered rows out of their chat's: only pending rows order a chat (issue 10)
    10: [
        "DROP INDEX IF EXISTS ix_messages_queue",
        "CREATE INDEX ix_messages_queue ON messages (tenant_id, status, id)"
        " WHERE status != 'received'",
        "DROP INDEX IF EXISTS ix_messages_wa",
        "CREATE INDEX ix_messages_wa ON messages (tenant_id, wa_id) WHERE wa_id IS NOT NULL",
        "DROP INDEX IF EXISTS ix_outbox_chat",
        "CREATE INDEX ix_outbox_chat ON outbox (chat_key, id) WHERE status = 'pending'",
    ],
    # whether a tenant ever asked a question, in one seek (store.sql_schedule)
    11: [
        "CREATE INDEX IF NOT EXISTS ix_messages_questions ON messages (tenant_id, direction)"
        " WHERE poll IS NOT NULL"
    ],
}
metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    # the engine that runs it; NULL (tenants older than per-tenant engines): the server's
    Column("engine", String(16)),
    Column("wanted", String(16), nullable=False, default=Wanted.RUNNING),
    Column("status", String(16), nullable=False, default=Status.STOPPED),
    Column("phone", String(32)),
    Column("push_name", Text),
    Column("jid", String(128)),
    Column("since", Float),
    Column("last_error", Text),
    Column("detail", Text),  # the raw error behind last_error, when that is put in words
    Column("reconnect_attempts", Integer, nullable=False, default=0),
    Column("next_retry_at", Float),
    Column("token_hash", String(128)),
    Column("webhook_url", Text),
    Column("webhook_secret", Text),
    Column("webhook_events", Text),
    # who set the webhook: "admin" or "tenant" (a tenant token); NULL: set before
    # zapmux kept it, or none set (webhook_url.py: who may reach a private address)
    Column("webhook_by", String(8)),
    Column("owner", String(128)),
    Column("lease_until", Float),
    # Which life of this id the row is: a tenant deleted and created again gets a new
    # one, and writes made for the old life (a send racing the delete) are refused.
    Column("incarnation", String(32)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # JSON list of the words that opt a number out; NULL = the defaults (optouts.py)
    Column("opt_out_keywords", Text),
)

# The nodes sharing this store (several only on PostgreSQL): where to reach each.
nodes = Table(
    "nodes",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("url", Text, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

# The message log is also the send queue: an outgoing message is a row whose status
# is "queued" until the tenant's owner sends it, in id order.
messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("message_id", String(128), nullable=False),
    Column("wa_id", String(128)),
    Column("direction", String(3), nullable=False),
    Column("chat", String(128), nullable=False),
    Column("phone", String(32)),
    Column("message_type", String(16), nullable=False),
    Column("text", Text),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("error_code", String(32)),  # a stable code for ``error`` (errors.py)
    Column("push_name", Text),
    Column("from_me", Boolean, nullable=False, default=False),
    Column("is_group", Boolean, nullable=False, default=False),
    Column("reply_to", String(128)),
    Column("payload", Text),
    Column("media_mimetype", String(128)),
    Column("media_filename", Text),
    Column("timestamp", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # a scheduled send: status "scheduled" until then (scheduler.py)
    Column("send_at", Float),
    # a question with answers: JSON {"options": [...], "secret": <engine's, if any>}
    Column("poll", Text),
    UniqueConstraint("tenant_id", "message_id", name="uq_messages_tenant_message"),
)
#: ``direction = 'out'`` as SQL text: a query must say it just so to use
#: ix_messages_outgoing below, and SQLite prepares a statement again at every run when
#: it binds a column that a partial index's condition names: every statement on
#: messages.direction writes it.
OUTGOING: ColumnClause[str] = literal_column("'out'")
_OUT = messages.c.direction == OUTGOING
# Incoming messages (most of the rows, one per message a customer sends) enter only the
# indexes they are looked up by: their key, their chat's. The send queue's and the
# WhatsApp ids' are of outgoing messages only (a WhatsApp id is set once one is sent):
# an incoming row went into both at a place of its tenant's, and every commit wrote
# those pages again (20 us of 70 per incoming row with its share of a commit).
#: The rows of ix_messages_queue: outgoing messages (only incoming ones are "received"),
#: said by their status so that a query of the queue names no direction: with it,
#: SQLite took ix_messages_outgoing instead and walked every message a tenant sent. A
#: query must say it just so (its SQL text) to use the index.
NOT_RECEIVED = messages.c.status != literal_column("'received'")
Index(  # the send queue (statuses of outgoing messages)
    "ix_messages_queue",
    messages.c.tenant_id,
    messages.c.status,
    messages.c.id,
    sqlite_where=NOT_RECEIVED,
    postgresql_where=NOT_RECEIVED,
)
Index("ix_messages_scheduled", messages.c.status, messages.c.send_at)
Index("ix_messages_phone", messages.c.tenant_id, messages.c.phone, messages.c.id)
Index(  # receipts and votes find the message sent by its WhatsApp id
    "ix_messages_wa",
    messages.c.tenant_id,
    messages.c.wa_id,
    sqlite_where=messages.c.wa_id.is_not(None),
    postgresql_where=messages.c.wa_id.is_not(None),
)
Index(  # direction in it too: SQLite then prefers it to ix_messages_phone
    "ix_messages_outgoing",
    messages.c.tenant_id,
    messages.c.direction,
    messages.c.phone,
    messages.c.id,
    sqlite_where=_OUT,
    postgresql_where=_OUT,
)
#: The questions a tenant sent (outgoing messages with answers; an answer keeps its
#: ``poll`` too): few rows, one seek to know that a tenant never asked one, and that its
#: customers' texts answer nothing. Direction is a column, not in the condition: SQLite
#: then prefers this index to ix_messages_outgoing (both seek tenant and direction).
_POLLED = messages.c.poll.is_not(None)
QUESTION = and_(_POLLED, _OUT)
Index(
    "ix_messages_questions",
    messages.c.tenant_id,
    messages.c.direction,
    sqlite_where=_POLLED,
    postgresql_where=_POLLED,
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), nullable=False, unique=True),
    Column("tenant_id", String(64)),
    Column("event", String(32), nullable=False),
    # where it goes, resolved to a URL and a secret at each attempt: "flask" (the
    # default Flask URL), "tenant:<id>" (that tenant's webhook) or "url:<url>" (pinned)
    Column("target", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("chat_key", String(256), nullable=False),
    Column("status", String(16), nullable=False, default=DeliveryStatus.PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("locked_until", Float),
    Column("delivered_at", Float),
    # set when a person replays it: its 24 h of retries count from then
    Column("replayed_at", Float),
)
Index("ix_outbox_due", outbox.c.status, outbox.c.next_attempt_at)
#: The rows of ix_outbox_chat: a chat's order is that of its pending rows alone. A
#: delivered row (kept a week) entered it again at its chat's place when it finished,
#: a page of its own in every commit (28 us of 51 per row, its insert and its finish).
#: A query must say it just so (its SQL text, not a bound "pending") to use the index,
#: and SQLite prepares again at every run a statement that binds a status to compare.
PENDING: ColumnClause[str] = literal_column("'pending'")
OUTBOX_PENDING = outbox.c.status == PENDING
Index(
    "ix_outbox_chat",
    outbox.c.chat_key,
    outbox.c.id,
    sqlite_where=OUTBOX_PENDING,
    postgresql_where=OUTBOX_PENDING,
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Inbound events zapmux could not record (set aside instead of blocking the tenant's
# line); listed and replayed through the API.
inbound_dead = Table(
    "inbound_dead",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("event", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

jid_cache = Table(
    "jid_cache",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("exists", Boolean, nullable=False),
    Column("jid", String(128)),
    Column("checked_at", Float, nullable=False),
)

# Numbers that asked a tenant to stop writing (an opt-out keyword), until lifted.
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("keyword", Text, nullable=False),  # what they wrote
    Column("message_id", String(128)),
    Column("created_at", Float, nullable=False),
)

media = Table(
    "media",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("message_id", String(128), primary_key=True),
    Column("mimetype", String(128), nullable=False),
    Column("filename", Text),
    Column("data", LargeBinary, nullable=False),
)

# A cloud tenant's credentials for Meta's WhatsApp Cloud API (secrets: never shown).
# The webhook finds its tenant by phone number id, so that is unique.
cloud_accounts = Table(
    "cloud_accounts",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("phone_number_id", String(64), nullable=False, unique=True),
    Column("access_token", Text, nullable=False),
    Column("app_secret", Text, nullable=False),
    Column("verify_token", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# --- the sandbox network's state (only used by the sandbox engine) ---------------
sandbox_sessions = Table(
    "sandbox_sessions",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("phone", String(32), nullable=False),
    Column("push_name", Text),
    Column("paired_at", Float, nullable=False),
    Column("network_down", Boolean, nullable=False, default=False),
)

sandbox_qr = Table(
    "sandbox_qr",
    metadata,
    Column("code", String(128), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("current", Boolean, nullable=False),
)

sandbox_pair_codes = Table(
    "sandbox_pair_codes",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("expires_at", Float, nullable=False),
)

sandbox_phones = Table(
    "sandbox_phones",
    metadata,
    Column("phone", String(32), primary_key=True),
    Column("on_whatsapp", Boolean, nullable=False),
)

# What phones received from tenants (their inbox), and what phones sent to tenants
# that the tenant's session has not yet acknowledged (pending, like a real server's
# offline queue).
sandbox_inbox = Table(
    "sandbox_inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phone", String(32), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("message_id", String(128), nullable=False),
    Column("text", Text),
    Column("media_kind", String(16)),
    Column("media_mimetype", String(128)),
    Column("media_filename", Text),
    Column("media_size", Integer),
    Column("reply_to", String(128)),
    Column("read", Boolean, nullable=False, default=False),
    Column("received_at", Float, nullable=False),
    Column("options", Text),  # a question's answers (JSON list)
)
Index("ix_sandbox_inbox_phone", sandbox_inbox.c.phone, sandbox_inbox.c.id)

sandbox_pending = Table(
    "sandbox_pending",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("event", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_sandbox_pending_tenant", sandbox_pending.c.tenant_id, sandbox_pending.c.id)
