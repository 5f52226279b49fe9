"""Opt-outs: a customer who writes one of the tenant's keywords (``SAIR``) is not
written to again until the tenant lifts it.

Matching ignores case, accents, the spaces around the text and punctuation at its
ends (``" Sair! "`` matches ``SAIR``); the whole message must be the keyword, so
"não quero sair do grupo" opts nobody out. A number is one person whichever way its
Brazilian ninth digit is written. ``CANCELAR`` is deliberately not a default: for a
clinic it means cancelling the appointment, which the application must see.

Keywords are per tenant (``PUT /tenants/{id}/opt-out-keywords``), stored on the
tenant; ``null`` there means :data:`DEFAULT_KEYWORDS`, an empty list turns opt-outs off.
"""

from __future__ import annotations

import json
import string
import time
import unicodedata
from collections.abc import Sequence

from zapmux.errors import InvalidInput, OptedOut
from zapmux.phone import ninth_digit_variants
from zapmux.store.base import OptOutStore
from zapmux.store.records import OptOut, TenantRecord

DEFAULT_KEYWORDS: tuple[str, ...] = ("SAIR", "PARAR", "STOP", "DESCADASTRAR")
MAX_KEYWORDS = 50
MAX_KEYWORD_LENGTH = 64
_ENDS = string.whitespace + string.punctuation + "¡¿…"


def normalize(text: str) -> str:
    """The form keywords are compared in: no accents, case folded, ends trimmed."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().strip(_ENDS).split())


def keywords_of(tenant: TenantRecord | None) -> list[str]:
    """The tenant's opt-out keywords (the defaults unless it set its own)."""
    if tenant is None or tenant.opt_out_keywords is None:
        return list(DEFAULT_KEYWORDS)
    return list(json.loads(tenant.opt_out_keywords))


def matched_keyword(text: str, keywords: Sequence[str]) -> str | None:
    """The keyword the whole ``text`` is, if any."""
    said = normalize(text)
    if not said:
        return None
    return next((k for k in keywords if normalize(k) == said), None)


def clean_keywords(keywords: Sequence[str]) -> list[str]:
    """Keywords as given (trimmed, duplicates dropped), or InvalidInput."""
    if len(keywords) > MAX_KEYWORDS:
        raise InvalidInput(f"at most {MAX_KEYWORDS} opt-out keywords")
    kept: dict[str, str] = {}
    for keyword in keywords:
        word = keyword.strip()
        if not normalize(word) or len(word) > MAX_KEYWORD_LENGTH:
            raise InvalidInput(
                f"an opt-out keyword must have a letter or digit and at most "
                f"{MAX_KEYWORD_LENGTH} characters: {keyword!r}"
            )
        kept.setdefault(normalize(word), word)
    return list(kept.values())


class OptOuts:
    """Records opt-outs and refuses sends to the numbers that opted out."""

    def __init__(self, store: OptOutStore) -> None:
        self.store = store

    async def refuse_if_opted_out(self, tenant_id: str, phone: str) -> None:
        """Raise ``OptedOut`` when ``phone`` (either ninth-digit spelling) opted out."""
        found = await self.store.find_opt_out(tenant_id, ninth_digit_variants(phone))
        if found is not None:
            raise OptedOut(
                f"{phone} opted out of messages from tenant {tenant_id} (wrote "
                f"{found.keyword!r}); nothing was sent",
                phone=phone,
            )

    async def opted_out(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (tenant, phone) pairs opted out, either ninth-digit spelling."""
        spelled = {(t, v): (t, p) for t, p in pairs for v in ninth_digit_variants(p)}
        return {spelled[hit] for hit in await self.store.opted_out_among(list(spelled))}

    async def record(
        self,
        tenant_id: str,
        phone: str,
        keyword: str,
        message_id: str,
        incarnation: str | None = None,
    ) -> None:
        """Opt ``phone`` out (in the tenant's life ``incarnation``: never a later one's)."""
        opt_out = OptOut(tenant_id, phone, keyword, time.time(), message_id)
        await self.store.add_opt_out(opt_out, incarnation)

    async def lift(self, tenant_id: str, phone: str) -> int:
        return await self.store.remove_opt_out(tenant_id, ninth_digit_variants(phone))
