"""Nothing accepted is lost: the receiver down, then zapmux killed with SIGKILL in the
middle of deliveries (twice), then the receiver up → every message arrives, signed,
in order per chat; duplicates (at-least-once) are counted and reported."""

from __future__ import annotations

import json
from collections import Counter

from tests.delivery.conftest import SECRET, StartNode
from tests.helpers import Receiver, wait_for
from tests.process import signature_ok

CHATS = ["5511911110001", "5511911110002", "5521922220003"]
PER_CHAT = 8


async def _busy(receiver: Receiver) -> bool:
    return receiver.busy > 0


async def test_kill_9_while_the_receiver_is_down_loses_nothing(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    await node.create_paired("loja1", "5511988880000")

    # The receiver is down (503, slowly) while the customers write, interleaved.
    receiver.status, receiver.delay = 503, 0.3
    sent: dict[str, list[str]] = {phone: [] for phone in CHATS}
    for n in range(PER_CHAT):
        for phone in CHATS:
            text = f"{phone[-4:]}-{n:02d}"
            await node.customer_says(phone, "loja1", text)
            sent[phone].append(text)
    await wait_for(lambda: _busy(receiver), what="a delivery in flight")
    await node.kill()  # mid-request: claimed rows are never finished by this process

    # Up again; the receiver answers 200 but slowly, and we kill once more mid-flight.
    receiver.status = 200
    await node.start()
    await wait_for(lambda: _busy(receiver), timeout=15, what="a delivery in flight")
    await node.kill()

    receiver.delay = 0
    await node.start()
    everything = {text for texts in sent.values() for text in texts}

    async def all_delivered() -> bool:
        return everything <= {
            hit.json["message"] for hit in receiver.received if hit.answered == 200
        }

    await wait_for(all_delivered, timeout=30, interval=0.1, what="every message delivered")
    _check_and_report(receiver, sent)


def _check_and_report(receiver: Receiver, sent: dict[str, list[str]]) -> None:
    hits = receiver.received
    assert hits, "nothing was received"
    assert all(hit.path == "/webhook/whatsapp" for hit in hits)
    bad = [hit.headers.get("X-Zapmux-Delivery") for hit in hits if not signature_ok(hit, SECRET)]
    assert not bad, f"bad signatures on {bad}"

    # One delivery id per message: retries and replays reuse it, never mint a new one.
    ids_per_text: dict[str, set[str]] = {}
    for hit in hits:
        ids_per_text.setdefault(hit.json["message"], set()).add(hit.headers["X-Zapmux-Delivery"])
    assert all(len(ids) == 1 for ids in ids_per_text.values()), ids_per_text

    # First arrivals, per chat, in the order the customer wrote (across both kills).
    for phone, texts in sent.items():
        first_seen: list[str] = []
        for hit in hits:
            body = hit.json
            if body["phone"] == phone and body["message"] not in first_seen:
                first_seen.append(body["message"])
        assert first_seen == texts, f"chat {phone}: {first_seen}"
        assert all(
            hit.json["empresa_id"] == "loja1" and hit.json["tenant_id"] == "loja1"
            for hit in hits
            if hit.json["phone"] == phone
        )

    ok = Counter(hit.headers["X-Zapmux-Delivery"] for hit in hits if hit.answered == 200)
    duplicates = {d: n for d, n in ok.items() if n > 1}
    report = {
        "messages": sum(len(t) for t in sent.values()),
        "requests": len(hits),
        "answered_503": sum(hit.answered == 503 for hit in hits),
        "delivered_ids": len(ok),
        "duplicate_deliveries": sum(n - 1 for n in duplicates.values()),
        "duplicated_ids": len(duplicates),
        "missing": 0,
    }
    print("\ndelivery report:", json.dumps(report))
    assert len(ok) == report["messages"]
