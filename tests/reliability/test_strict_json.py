"""A JSON object that names a key twice is refused, not guessed (issue 14, 7)."""

from __future__ import annotations

from tests.helpers import LiveServer


async def test_duplicate_keys_are_refused_and_change_nothing(server: LiveServer) -> None:
    response = await server.http.post(
        "/tenants",
        content=b'{"tenantId": "dupA", "tenantId": "dupB"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate_key"
    assert "tenantId" in response.json()["error"]["message"]
    nested = await server.http.post(
        "/sandbox/phones",
        content=b'{"phone": "5511977770000", "x": {"a": 1, "a": 2}}',
        headers={"Content-Type": "application/json"},
    )
    assert nested.status_code == 400
    assert (await server.http.get("/tenants")).json()["tenants"] == []
