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

import functools
import json
import string
import time
import unicodedata
from collections.abc import Sequence

from zapmux.errors import InvalidInput, OptedOut
from zapmux.phone import ninth_digit_variants
from zapmux.store.base import OPT_OUT_CHANGES, OptOutStore
from zapmux.store.records import OptOut, TenantRecord

DEFAULT_KEYWORDS: tuple[str, ...] = ("SAIR", "PARAR", "STOP", "DESCADASTRAR")
MAX_KEYWORDS = 50
MAX_KEYWORD_LENGTH = 64
_ENDS = string.whitespace + string.punctuation + "¡¿…"


def normalize(text: str) -> str:
    """The form keywords are compared in: no accents, case folded, ends trimmed."""
    if text.isascii():  # most texts: nothing to decompose, no accent to drop
        bare = text
    else:
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
    return _forms(tuple(keywords)).get(said)


@functools.lru_cache(maxsize=1024)
def _forms(keywords: tuple[str, ...]) -> dict[str, str]:
    """Each keyword by its normalized form (the first of two alike), for every message of
    a tenant to look up instead of normalizing the keywords again."""
    forms: dict[str, str] = {}
    for keyword in keywords:
        forms.setdefault(normalize(keyword), keyword)
    return forms


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
    """Records opt-outs and refuses sends to the numbers that opted out.

    Each tenant's opted-out numbers are read once, on its first send, and kept in
    memory for that life of the tenant (its ``incarnation``): a send reads nothing.
    What changes them (an opt-out recorded, one lifted, here or on another node, which
    tells through the store's change feed) makes the next send read them again.
    """

    def __init__(self, store: OptOutStore) -> None:
        self.store = store
        # tenant -> (its incarnation, {phone as stored: the keyword it wrote})
        self._known: dict[str, tuple[str, dict[str, str]]] = {}
        self._changes: dict[str, int] = {}  # a read that saw another count is not kept

    async def start(self) -> None:
        await self.store.subscribe(OPT_OUT_CHANGES, self.changed)

    def changed(self, tenant_id: str | None) -> None:
        """The tenant's opt-outs changed (None: perhaps any tenant's)."""
        if tenant_id is None:
            self._known.clear()
            self._changes = {t: n + 1 for t, n in self._changes.items()}
            return
        self._known.pop(tenant_id, None)
        self._changes[tenant_id] = self._changes.get(tenant_id, 0) + 1

    async def refuse_if_opted_out(
        self, tenant_id: str, phone: str, incarnation: str | None = None
    ) -> None:
        """Raise ``OptedOut`` when ``phone`` (either ninth-digit spelling) opted out.
        With the tenant's ``incarnation``, from memory (see the class docstring)."""
        variants = ninth_digit_variants(phone)
        if incarnation is None:
            found = await self.store.find_opt_out(tenant_id, variants)
            keyword = found.keyword if found is not None else None
        else:
            known = await self._opted_out(tenant_id, incarnation)
            keyword = next((known[v] for v in variants if v in known), None)
        if keyword is not None:
            raise OptedOut(
                f"{phone} opted out of messages from tenant {tenant_id} (wrote "
                f"{keyword!r}); nothing was sent",
                phone=phone,
            )

    async def _opted_out(self, tenant_id: str, incarnation: str) -> dict[str, str]:
        known = self._known.get(tenant_id)
        if known is not None and known[0] == incarnation:
            return known[1]
        seen = self._changes.get(tenant_id, 0)
        phones = {o.phone: o.keyword for o in await self.store.list_opt_outs(tenant_id)}
        if self._changes.get(tenant_id, 0) == seen:  # nothing changed while we read
            self._known[tenant_id] = (incarnation, phones)
        return phones

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
        try:
            await self.store.add_opt_out(opt_out, incarnation)
        finally:  # a read that began before the commit is not kept either
            self.changed(tenant_id)

    async def lift(self, tenant_id: str, phone: str) -> int:
        try:
            return await self.store.remove_opt_out(tenant_id, ninth_digit_variants(phone))
        finally:
            self.changed(tenant_id)
