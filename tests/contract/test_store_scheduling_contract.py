"""The store's part in scheduled sends, cancelling, questions and opt-outs, on every backend."""

from __future__ import annotations

import time

from tests.helpers import message_record
from zapmux.store.base import Store
from zapmux.store.records import MessageRecord, OptOut, TenantRecord

PHONE = "5511999999999"


def _out(mid: str, status: str, send_at: float | None = None, tenant: str = "t") -> MessageRecord:
    payload = '{"phone": "5511999999999", "text": "x"}'
    return message_record(tenant, mid, status, PHONE, send_at=send_at, payload=payload)


async def _tenants(store: Store, **owners: str) -> None:
    for tenant_id, node in owners.items():
        await store.create_tenant(TenantRecord(id=tenant_id, owner=node, lease_until=2e9))


async def test_only_the_owners_scheduled_sends_are_seen(store: Store) -> None:
    await _tenants(store, t="a", u="b")
    now = time.time()
    await store.add_message(_out("later", "scheduled", now + 60))
    await store.add_message(_out("soon", "scheduled", now - 1))
    await store.add_message(_out("other-node", "scheduled", now - 5, tenant="u"))
    await store.add_message(_out("plain", "queued"))
    assert await store.next_scheduled_at("a") == now - 1
    assert await store.next_scheduled_at("b") == now - 5
    assert await store.next_scheduled_at("c") is None
    assert [m.message_id for m in await store.due_scheduled("a", now, 10)] == ["soon"]


async def test_a_promoted_send_joins_the_back_of_the_queue(store: Store) -> None:
    await _tenants(store, t="a")
    await store.add_message(_out("reminder", "scheduled", time.time() - 1))
    await store.add_message(_out("waiting", "queued"))
    await store.add_message(_out("later", "scheduled", time.time() - 1))
    keys = [("t", "later"), ("t", "reminder"), ("t", "waiting")]
    assert await store.promote_scheduled(keys) == [("t", "later"), ("t", "reminder")]
    assert await store.promote_scheduled(keys) == []  # once only
    queue = [m.message_id for m in await store.list_messages("t", status="queued")][::-1]
    assert queue == ["waiting", "later", "reminder"]
    promoted = await store.get_message("t", "reminder")
    assert promoted is not None and promoted.status == "queued" and promoted.payload
    assert await store.next_scheduled_at("a") is None


async def test_cancel_only_what_has_not_gone_out(store: Store) -> None:
    for mid, status in (("s", "scheduled"), ("q", "queued"), ("x", "sent"), ("f", "failed")):
        await store.add_message(_out(mid, status))
    assert await store.cancel_message("t", "s") == "scheduled"
    assert await store.cancel_message("t", "q") == "queued"
    assert await store.cancel_message("t", "x") is None
    assert await store.cancel_message("t", "f") is None
    assert await store.cancel_message("t", "missing") is None
    cancelled = await store.get_message("t", "q")
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.payload is None
    assert await store.next_queued("t") is None
    assert not await store.claim_queued("t", "q", "chat")  # the queue skips it
    assert await store.promote_scheduled([("t", "s")]) == []
    listed = await store.list_messages("t", status="cancelled")
    assert sorted(m.message_id for m in listed) == ["q", "s"]


async def test_claim_queued_marks_it_sending_once(store: Store) -> None:
    await store.add_message(_out("q", "queued"))
    assert await store.claim_queued("t", "q", "551199999999@s.whatsapp.net")
    assert not await store.claim_queued("t", "q", "x")
    claimed = await store.get_message("t", "q")
    assert claimed is not None and claimed.status == "sending"
    assert claimed.chat == "551199999999@s.whatsapp.net"
    assert [m.message_id for m in await store.list_messages("t", status="queued")] == ["q"]


async def test_questions_are_found_by_engine_id_and_as_the_last_sent(store: Store) -> None:
    question = _out("ZM1", "sent")
    question.wa_id, question.poll = "3EB0QUESTION", '{"options": ["Sim", "Não"]}'
    await store.add_message(question)
    await store.add_message(_out("ZM2", "queued"))  # not gone out: not the last sent
    found = await store.find_outgoing("t", "3EB0QUESTION")
    assert found is not None and found.options == ["Sim", "Não"]
    last = await store.last_outgoing("t", [PHONE, "551199999999"])
    assert last is not None and last.message_id == "ZM1"
    assert await store.last_outgoing("t", ["5511000000000"]) is None
    assert await store.find_outgoing("other", "3EB0QUESTION") is None


async def test_the_last_sent_is_the_newest_over_every_spelling_and_ignores_replies(
    store: Store,
) -> None:
    old_spelling = "551199999999"  # without the ninth digit
    await store.add_message(message_record("t", "ZM1", "read", PHONE))
    await store.add_message(message_record("t", "ZM2", "delivered", old_spelling))
    await store.add_message(message_record("t", "ZM3", "failed", PHONE))  # never went out
    for n in range(3):  # the customer's replies come after: they are not sent messages
        reply = message_record("t", f"IN{n}", "received", PHONE, direction="in")
        await store.add_message(reply)
    last = await store.last_outgoing("t", [PHONE, old_spelling])
    assert last is not None and last.message_id == "ZM2"
    last = await store.last_outgoing("t", [PHONE])
    assert last is not None and last.message_id == "ZM1"
    assert last.from_me is False and last.is_group is False  # as stored, not SQLite's 0
    assert await store.last_outgoing("other", [PHONE, old_spelling]) is None
    await store.add_message(message_record("t", "ZM4", "sent", PHONE))  # newer again
    last = await store.last_outgoing("t", [PHONE, old_spelling])
    assert last is not None and last.message_id == "ZM4"


async def test_the_last_question_is_the_last_sent_when_it_asks(store: Store) -> None:
    """What a typed answer answers. A store may remember that a tenant never asked a
    question (SQLite: one seek, then no read per text): a question written after that
    is the answer's at once."""
    old_spelling = "551199999999"
    await store.add_message(message_record("t", "ZM1", "sent", PHONE))
    assert await store.last_question("t", [PHONE, old_spelling]) is None  # asked nothing
    question = message_record("t", "ZM2", "sent", old_spelling)
    question.poll = '{"options": ["Confirmar", "Remarcar"]}'
    await store.add_message(question)
    asked = await store.last_question("t", [PHONE, old_spelling])
    assert asked is not None and asked.message_id == "ZM2"
    assert asked.options == ["Confirmar", "Remarcar"]
    assert await store.last_question("t", [PHONE]) is None  # that spelling got no question
    assert await store.last_question("u", [PHONE, old_spelling]) is None  # another tenant
    await store.add_message(message_record("t", "ZM3", "sent", PHONE))  # a reminder after
    assert await store.last_question("t", [PHONE, old_spelling]) is None
    # a customer's answer keeps its poll too, but only a tenant's question asks
    answer = message_record("u", "IN1", "received", PHONE, direction="in")
    answer.poll = '{"message_id": "ZM9", "selected": ["Sim"], "options": ["Sim"]}'
    await store.add_message(answer)
    assert await store.last_question("u", [PHONE]) is None


async def test_opt_outs_by_any_spelling_and_lifted(store: Store) -> None:
    await store.add_opt_out(OptOut("t", PHONE, "SAIR", 1.0, "in1"))
    await store.add_opt_out(OptOut("t", PHONE, "PARAR", 2.0, "in2"))  # again: one row
    await store.add_opt_out(OptOut("u", "5511888888888", "STOP", 3.0))
    found = await store.find_opt_out("t", ["551199999999", PHONE])
    assert found is not None and found.keyword == "PARAR"
    assert await store.find_opt_out("u", [PHONE]) is None
    among = [("t", PHONE), ("u", PHONE), ("u", "5511888888888"), ("t", "5511888888888")]
    assert await store.opted_out_among(among) == {("t", PHONE), ("u", "5511888888888")}
    assert await store.opted_out_among([]) == set()
    assert [o.phone for o in await store.list_opt_outs("t")] == [PHONE]
    assert await store.remove_opt_out("t", [PHONE, "551199999999"]) == 1
    assert await store.find_opt_out("t", [PHONE]) is None
    assert await store.remove_opt_out("t", [PHONE]) == 0


async def test_a_deleted_tenant_leaves_no_opt_outs_nor_scheduled_sends(store: Store) -> None:
    await _tenants(store, t="a")
    await store.add_opt_out(OptOut("t", PHONE, "SAIR", 1.0))
    await store.add_message(_out("s", "scheduled", time.time() - 1))
    assert await store.delete_tenant("t")
    await _tenants(store, t="a")  # a new tenant of the same name inherits nothing
    assert await store.list_opt_outs("t") == []
    assert await store.due_scheduled("a", time.time(), 10) == []
    assert await store.get_message("t", "s") is None


async def test_a_deleted_tenants_due_sends_are_not_queued_again(store: Store) -> None:
    await _tenants(store, t="a")
    await store.add_message(_out("s", "scheduled", time.time() - 1, tenant="ghost"))
    await store.add_message(_out("r", "scheduled", time.time() - 1))
    promoted = await store.promote_scheduled([("ghost", "s"), ("t", "r")])
    assert promoted == [("t", "r")]
    assert await store.get_message("ghost", "s") is None
