"""Phone numbers and WhatsApp JIDs.

A phone is kept as digits with the country code (``5511999999999``). A JID is the
address WhatsApp uses (``5511999999999@s.whatsapp.net``); it parses and prints back to
the same string. Brazil's mobiles gained a ninth digit in 2012-2016, but many accounts
are still registered without it: :func:`ninth_digit_variants` gives both spellings so
that the engine can ask WhatsApp which one exists, never guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zapmux.errors import InvalidPhone

USER_SERVER = "s.whatsapp.net"
GROUP_SERVER = "g.us"
LID_SERVER = "lid"  # WhatsApp's "linked identity": an id that hides the phone number
_SEPARATORS = re.compile(r"[\s().\-]")


def normalize_phone(raw: object) -> str:
    """Digits with country code, from what a person would type; InvalidPhone otherwise."""
    if type(raw) is str and 8 <= len(raw) <= 15 and raw.isdigit() and raw.isascii():
        return raw  # already so (as every message's sender comes): as it is
    if (
        not isinstance(raw, str | int)
        or isinstance(raw, bool)
        or (isinstance(raw, int) and raw < 0)
    ):
        raise InvalidPhone("phone must be a string of digits with the country code")
    text = str(raw).strip()
    if "@" in text:
        text = text.split("@", 1)[0].split(":", 1)[0]
    text = _SEPARATORS.sub("", text)
    if text.startswith("+"):
        text = text[1:]
    if not text.isascii() or not text.isdigit() or not 8 <= len(text) <= 15:
        raise InvalidPhone(
            f"invalid phone number {str(raw)[:40]!r}: give 8-15 digits with the country code"
        )
    return text


def ninth_digit_variants(phone: str) -> list[str]:
    """The number as given, then its other Brazilian mobile spelling, if it has one.

    ``55 DD 9XXXXXXXX`` (13 digits) ↔ ``55 DD XXXXXXXX`` (12 digits, mobile ranges 6-9).
    """
    variants = [phone]
    if phone.startswith("55") and len(phone) == 13 and phone[4] == "9":
        variants.append(phone[:4] + phone[5:])
    elif phone.startswith("55") and len(phone) == 12 and phone[4] in "6789":
        variants.append(phone[:4] + "9" + phone[4:])
    return variants


@dataclass(frozen=True, slots=True)
class JID:
    """A WhatsApp address: ``user[:device]@server``."""

    user: str
    server: str = USER_SERVER
    device: int = 0

    @classmethod
    def parse(cls, text: str) -> JID:
        if "@" not in text:
            return cls(user=normalize_phone(text))
        user, server = text.split("@", 1)
        device = 0
        if ":" in user:
            user, dev = user.split(":", 1)
            device = int(dev) if dev.isdigit() else 0
        return cls(user=user, server=server, device=device)

    @property
    def is_group(self) -> bool:
        return self.server == GROUP_SERVER

    def __str__(self) -> str:
        device = f":{self.device}" if self.device else ""
        return f"{self.user}{device}@{self.server}"
