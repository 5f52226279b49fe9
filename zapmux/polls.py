"""Questions with answers: the answers, read back from what a customer sent.

A vote (``message_type: "voto"``) names the question by its engine id and the chosen
answers by the SHA-256 of their text; the question's answers are in the message log,
so the vote becomes the texts. A typed answer — ``1``, ``2`` … or an answer's own
text, to the question that was the last message the tenant sent to that number, no
more than :data:`RECENT_S` ago — keeps ``message_type: "texto"`` and gets the same
``poll`` object: a help for applications, not a replacement for the vote.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from zapmux.events import IncomingMessage, PollVote
from zapmux.optouts import normalize
from zapmux.phone import ninth_digit_variants
from zapmux.store.base import ScheduleStore
from zapmux.store.records import MessageRecord

RECENT_S = 3 * 24 * 3600.0  # how long a question takes typed answers
MAX_ANSWER_LENGTH = 100


def option_hash(text: str) -> str:
    """How WhatsApp names a poll answer in a vote: the SHA-256 of its text (hex)."""
    return hashlib.sha256(text.encode()).hexdigest()


def poll_object(
    question: MessageRecord | None, poll_id: str, selected: list[str]
) -> dict[str, Any]:
    """The webhook's ``poll``: which question (zapmux's id), what was chosen, the answers."""
    return {
        "message_id": question.message_id if question else poll_id,
        "selected": selected,
        "options": (question.options or []) if question else [],
    }


class Polls:
    """Reads votes and typed answers against the questions in the message log."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store

    async def vote(self, tenant_id: str, vote: PollVote) -> dict[str, Any]:
        """The ``poll`` object of a vote (an unknown question: no answers, nothing chosen)."""
        question = await self.store.find_outgoing(tenant_id, vote.poll_id)
        by_hash = {option_hash(o): o for o in (question.options or [])} if question else {}
        selected = [by_hash[h] for h in vote.selected_hashes if h in by_hash]
        poll = poll_object(question, vote.poll_id, selected)
        if vote.error:
            poll["error"] = vote.error
        return poll

    async def typed_answer(self, tenant_id: str, m: IncomingMessage) -> dict[str, Any] | None:
        """The ``poll`` object when a text answers the last question sent to that number."""
        text = m.text.strip()
        if m.from_me or m.is_group or not text or len(text) > MAX_ANSWER_LENGTH:
            return None
        question = await self.store.last_question(tenant_id, ninth_digit_variants(m.phone))
        if question is None or not question.options:
            return None
        if time.time() - question.timestamp > RECENT_S:
            return None
        chosen = answer_of(text, question.options)
        return poll_object(question, question.message_id, [chosen]) if chosen else None


def answer_of(text: str, options: list[str]) -> str | None:
    """The answer ``text`` names: its number (``1`` is the first) or its own text."""
    said = normalize(text)
    if said.isdigit() and 1 <= int(said) <= len(options):
        return options[int(said) - 1]
    return next((o for o in options if normalize(o) == said), None)


def vote_text(poll: dict[str, Any]) -> str:
    """A vote's ``message``: the chosen answer (several, comma-separated)."""
    return ", ".join(poll["selected"])
