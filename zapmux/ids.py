"""Tenant ids, checked before they reach a path, a query or a log line."""

from __future__ import annotations

import random
import re
import secrets
import time

from zapmux.errors import InvalidTenantId

# Message ids must be unique, not secret: drawn from a generator seeded once from the
# system, so that minting one costs no system call.
_RANDOM = random.Random(secrets.randbits(128))

TENANT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")


def validate_tenant_id(value: object) -> str:
    """The id itself when valid (SPEC §3), else InvalidTenantId."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)  # the seed's Flask sends {"tenantId": 1}
    if not isinstance(value, str) or not TENANT_ID.fullmatch(value) or value in {".", ".."}:
        raise InvalidTenantId()
    return value


def empresa_id(tenant_id: str) -> int | str:
    """The seed's ``empresa_id``: a JSON number when that number prints back as the id
    ("1" → 1), else the string: "0001" stays "0001", or it would read as tenant 1's."""
    if tenant_id.isdigit() and len(tenant_id) < 19 and str(int(tenant_id)) == tenant_id:
        return int(tenant_id)
    return tenant_id


def random_hex(digits: int) -> str:
    """``digits`` random upper-case hex digits (for ids)."""
    return f"{_RANDOM.getrandbits(4 * digits):0{digits}X}"


def time_ordered_hex() -> str:
    """32 lower-case hex digits, as a UUID's hex: the time in milliseconds, then 80
    random bits (a delivery's id). An index on such ids is written at its end, where
    the rows of one commit share a page; a random id took a page of its own each."""
    return f"{time.time_ns() // 1_000_000:012x}{_RANDOM.getrandbits(80):020x}"
