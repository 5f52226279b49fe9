"""Shared pieces of the security tests: keys, a keyed live server, the error shape."""

from __future__ import annotations

from typing import Any

import httpx

ADMIN_KEY = "admin-key-for-tests-0123456789abcdef"
PHONE = "5511999990000"


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"X-Api-Key": key}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(
    response: httpx.Response, status: int | None = None, code: str | None = None
) -> None:
    """The one error shape, with the status (and code) given, or any 4xx."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, (response.status_code, response.text)
    body: Any = response.json()
    assert body["success"] is False, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
