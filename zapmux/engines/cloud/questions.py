"""Questions with answers on the Cloud API: reply buttons (up to 3 answers) or a list
(up to 10), and the customer's choice read back as a vote.

Each button or row's id is the SHA-256 of its answer's text, as WhatsApp names poll
answers, so a choice comes back exactly like a whatsmeow vote: the question (the reply's
``context.id``, the wamid the send got) and the hash of the chosen answer. Titles are
shortened to Meta's limits on the phone; the id keeps the whole answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from zapmux.events import PollVote
from zapmux.polls import option_hash

MAX_BUTTONS = 3  # reply buttons per message
MAX_ROWS = 10  # rows in a list, all sections together
BUTTON_TITLE, ROW_TITLE, ROW_DESCRIPTION, BODY_TEXT = 20, 24, 72, 1024
_HASH = re.compile(r"[0-9a-f]{64}")


def interactive(question: str, options: Sequence[str]) -> dict[str, Any]:
    """The ``interactive`` object for a question: buttons for up to 3 answers, else a list."""
    body = {"text": question[:BODY_TEXT]}
    if len(options) <= MAX_BUTTONS:
        buttons = [
            {"type": "reply", "reply": {"id": option_hash(o), "title": _short(o, BUTTON_TITLE)}}
            for o in options
        ]
        return {"type": "button", "body": body, "action": {"buttons": buttons}}
    rows = [_row(o) for o in options]
    action = {"button": "Responder", "sections": [{"title": "Respostas", "rows": rows}]}
    return {"type": "list", "body": body, "action": action}


def _row(option: str) -> dict[str, str]:
    row = {"id": option_hash(option), "title": _short(option, ROW_TITLE)}
    if len(option) > ROW_TITLE:
        row["description"] = _short(option, ROW_DESCRIPTION)
    return row


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def vote_of(message: dict[str, Any]) -> PollVote | None:
    """A reply button or list row that answers one of zapmux's questions, as a vote."""
    if message.get("type") != "interactive":
        return None
    part = message.get("interactive")
    part = part if isinstance(part, dict) else {}
    reply = part.get(str(part.get("type")))
    reply = reply if isinstance(reply, dict) else {}
    choice = str(reply.get("id") or "")
    question = (message.get("context") or {}).get("id")
    if not question or not _HASH.fullmatch(choice):
        return None
    return PollVote(poll_id=str(question), selected_hashes=(choice,))
