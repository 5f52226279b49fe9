"""The named states: the strings they stand for, and the order receipts follow."""

from __future__ import annotations

import json

import pytest

from zapmux.states import PROGRESS, DeliveryStatus, MessageStatus, moved_by


def test_message_statuses_are_the_strings_the_store_and_api_use() -> None:
    assert [s.value for s in MessageStatus] == [
        "scheduled", "queued", "sending", "sent", "delivered", "read", "failed",
        "cancelled", "received",
    ]  # fmt: skip
    assert json.dumps({"status": MessageStatus.QUEUED}) == '{"status": "queued"}'
    assert f"{MessageStatus.READ}" == "read"


def test_delivery_statuses_are_the_strings_the_store_and_api_use() -> None:
    assert [s.value for s in DeliveryStatus] == ["pending", "delivered", "dead"]
    assert json.dumps([DeliveryStatus.DEAD]) == '["dead"]'


def test_a_late_receipt_never_moves_a_message_back() -> None:
    assert MessageStatus.READ not in moved_by(MessageStatus.DELIVERED)
    assert MessageStatus.DELIVERED not in moved_by("sent")
    assert moved_by("delivered") == [MessageStatus.SENDING, MessageStatus.SENT]
    assert moved_by("read") == [MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.DELIVERED]


def test_a_failure_report_overrides_any_handed_over_status_but_not_itself() -> None:
    assert moved_by("failed") == [
        MessageStatus.SENDING,
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
    ]


@pytest.mark.parametrize("receipt", ["sent", "delivered", "read", "failed"])
def test_no_receipt_touches_a_message_still_in_the_queue(receipt: str) -> None:
    assert MessageStatus.QUEUED not in moved_by(receipt)
    assert receipt not in moved_by(receipt)


def test_only_outgoing_statuses_on_the_way_have_a_rank() -> None:
    unranked = {MessageStatus.SCHEDULED, MessageStatus.CANCELLED, MessageStatus.RECEIVED}
    assert set(PROGRESS) == set(MessageStatus) - unranked
