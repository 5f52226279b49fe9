"""Webhook URLs are parsed strictly and refused at PUT when they can never work or point
where zapmux must never POST (issue 14, 5)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import LiveServer, make_settings

ADMIN = {"X-Api-Key": "admin-key-for-tests"}
MALFORMED = [
    "http://[::1/hook",  # an IPv6 literal never closed
    "http://127.0.0.1:99999/hook",  # no such port
    "http://127.0.0.1:0/hook",
    "http://127.0.0.1:4995\\@hooks.example.com/",  # where does it go? nobody agrees
    "http://hooks.example.com/a\r\nX-Injected: 1",
    "http://hooks.example.com/a b",
    "http://a@b@hooks.example.com/",
    "http://hooks.exämple.com/",
    "http://2852039166/",  # 169.254.169.254 written as a number
    "http://0xa9fea9fe/",
]
NEVER = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://100.100.100.200/",
    "http://0.0.0.0:8080/",
    "http://224.0.0.1/",
]
PRIVATE = [
    "http://127.0.0.1:5000/hook",
    "http://localhost:5000/hook",
    "http://10.0.0.8/hook",
    "http://192.168.1.20/hook",
    "http://[::1]:5000/hook",
]


async def put(server: LiveServer, url: str, headers: dict[str, str]) -> tuple[int, str]:
    response = await server.http.put("/tenants/w/webhook", json={"url": url}, headers=headers)
    return response.status_code, response.json().get("error", {}).get("code", "")


async def test_webhook_urls_are_checked_strictly_at_put(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key=ADMIN["X-Api-Key"])
    async with LiveServer(settings) as server:
        created = await server.http.post("/tenants", json={"tenantId": "w"}, headers=ADMIN)
        tenant = {"Authorization": f"Bearer {created.json()['token']}"}
        for who in (ADMIN, tenant):
            for url in MALFORMED:
                assert await put(server, url, who) == (400, "invalid_url"), url
            for url in NEVER:
                assert await put(server, url, who) == (400, "webhook_url_not_allowed"), url
        for url in PRIVATE:
            refused = await put(server, url, tenant)
            assert refused == (400, "webhook_host_not_allowed"), url
            assert await put(server, url, ADMIN) == (200, ""), url  # the operator may
        assert await put(server, "https://hooks.example.com/zap", tenant) == (200, "")
        current = await server.http.get("/tenants/w/webhook", headers=tenant)
        assert current.json()["webhook"]["url"] == "https://hooks.example.com/zap"


async def test_allowed_hosts_let_a_tenant_token_use_a_private_host(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, api_key=ADMIN["X-Api-Key"], webhook_allowed_hosts="app.internal,127.0.0.1"
    )
    async with LiveServer(settings) as server:
        created = await server.http.post("/tenants", json={"tenantId": "w"}, headers=ADMIN)
        tenant = {"Authorization": f"Bearer {created.json()['token']}"}
        assert await put(server, "http://127.0.0.1:5000/hook", tenant) == (200, "")
        assert await put(server, "http://app.internal/hook", tenant) == (200, "")
        assert await put(server, "http://10.0.0.8/hook", tenant) == (
            400,
            "webhook_host_not_allowed",
        )
        assert await put(server, "http://169.254.169.254/", ADMIN) == (
            400,
            "webhook_url_not_allowed",
        )  # listing it would not help
