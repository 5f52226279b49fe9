"""Who may call what: the admin key grants everything, a tenant token only its tenant.

Tokens are stored as SHA-256 hashes (they are random, so no slow hash is needed) and
every comparison runs in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass


def new_token() -> str:
    return "zt_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: the admin (``tenant_id`` None) or one tenant's token holder."""

    tenant_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def may_use(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id
