"""PostgreSQL: the webhooks of incoming messages keep up with them.

The deliverer's rounds run beside the writer that records incoming messages
(``store.writer.DELIVERIES``), and its cursor passes no row that writer commits
meanwhile: with the deliverer's once-a-second look at every row turned off, every
message of a burst still reaches the webhook, in order per customer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import live_node, needs_postgres
from tests.helpers import Receiver, wait_for
from zapmux import outbox

TENANTS = 8
CUSTOMERS = 40  # each writes to one tenant (i % 8): 40 chats of 30 messages
MESSAGES = 1200


@needs_postgres
async def test_a_burst_reaches_the_webhook_without_a_look_at_every_row(
    tmp_path: Path, database: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After its first round the deliverer learns of rows only from its cursor, the
    # chats it finished and its wake-ups: a row the cursor passed would wait an hour.
    monkeypatch.setattr(outbox, "POLL_S", 3600.0)
    async with live_node(tmp_path, database, "n1", flask_url=receiver.url) as node:
        for n in range(TENANTS):
            await node.create_paired(f"t{n}", phone=f"55119{n:08d}")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(MESSAGES):
            queue.put_nowait(i)

        async def phone() -> None:  # 16 phones at once, as the hot-path benchmark's
            while not queue.empty():
                i = queue.get_nowait()
                customer = f"55219{i % CUSTOMERS:08d}"
                await node.customer_says(customer, f"t{i % TENANTS}", f"m{i}")

        await asyncio.gather(*(phone() for _ in range(16)))

        def texts() -> list[tuple[str, str, int]]:
            bodies = [
                json.loads(r.body) for r in receiver.received if r.path == "/webhook/whatsapp"
            ]
            return [(b["tenant_id"], b["phone"], int(b["message"][1:])) for b in bodies]

        async def all_arrived() -> bool:
            return len({m[2] for m in texts()}) == MESSAGES

        await wait_for(all_arrived, timeout=60, what=f"{MESSAGES} webhooks")
        chats: dict[tuple[str, str], list[int]] = {}
        for tenant, phone_number, i in texts():
            chats.setdefault((tenant, phone_number), []).append(i)
        assert len(chats) == CUSTOMERS
        for got in chats.values():  # each customer's messages in the order sent
            assert got == sorted(got)
