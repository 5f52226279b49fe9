"""Cloud tenants through the API: created with Meta's credentials, connected by asking
Graph for the number, sending through it; secrets never shown; side by side with the
server's default engine."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.engines.cloud.conftest import APP_SECRET, CUSTOMER, NUMBER_ID, TOKEN, VERIFY, Cloud
from tests.fake_graph import TOKEN_EXPIRED

SECRETS = (TOKEN, APP_SECRET, VERIFY)


async def test_a_cloud_tenant_connects_with_its_number_and_verified_name(cloud: Cloud) -> None:
    created = await cloud.create("7")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["engine"] == "cloud" and body["status"] == "connected"
    assert body["phone"] == "5511988880000" and body["push_name"] == "Clínica Sorriso"
    method, path, auth = cloud.graph.requests[0]
    assert (method, path, auth) == ("GET", f"/v23.0/{NUMBER_ID}", f"Bearer {TOKEN}")


async def test_secrets_are_never_returned_nor_logged(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await cloud.create("7")
    pages = [created.text]
    for path in ("/tenants", "/tenants/7/status", "/status", "/", "/tenants/7/messages"):
        pages.append((await cloud.http.get(path)).text)
    # zapmux's own loggers and the server's (the database driver's DEBUG lines, which
    # echo SQL parameters, are silenced to WARNING by logs.configure)
    lines = [
        record.getMessage() + (record.exc_text or "")
        for record in caplog.records
        if record.name.startswith(("zapmux", "uvicorn"))
    ]
    assert lines
    for secret in SECRETS:
        assert all(secret not in page for page in pages), secret
        assert all(secret not in line for line in lines), secret
    listed = (await cloud.http.get("/tenants")).json()["tenants"][0]
    assert listed["engine"] == "cloud" and listed["push_name"] == "Clínica Sorriso"


async def test_engine_defaults_to_the_servers_and_tenants_of_both_run_side_by_side(
    cloud: Cloud,
) -> None:
    assert (await cloud.create("cloudy")).json()["status"] == "connected"
    await cloud.server.create_paired("local")  # the server's default engine: sandbox
    tenants = {t["tenant_id"]: t for t in (await cloud.http.get("/tenants")).json()["tenants"]}
    assert tenants["local"]["engine"] == "sandbox" and tenants["cloudy"]["engine"] == "cloud"
    for tenant_id in ("local", "cloudy"):
        sent = await cloud.http.post(
            f"/send/{tenant_id}", json={"phone": CUSTOMER, "message": f"oi de {tenant_id}"}
        )
        assert sent.status_code == 200, sent.text
    assert [m["text"]["body"] for m in cloud.graph.sent] == ["oi de cloudy"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"tenantId": "x", "engine": "telegram"}, "engine"),
        ({"tenantId": "x", "engine": "cloud"}, "cloud"),
        ({"tenantId": "x", "engine": "cloud", "cloud": {"phone_number_id": "1"}}, "access_token"),
        (
            {
                "tenantId": "x",
                "engine": "cloud",
                "cloud": {"phone_number_id": "1", "access_token": "t", "app_secret": "s"},
            },
            "verify_token",
        ),
        (
            {"tenantId": "x", "engine": "sandbox", "cloud": {"phone_number_id": "1"}},
            "cloud",
        ),
    ],
)
async def test_a_bad_engine_or_missing_credentials_is_422_saying_what(
    cloud: Cloud, body: dict[str, object], says: str
) -> None:
    response = await cloud.http.post("/tenants", json=body)
    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]
    assert (await cloud.http.get("/tenants")).json()["tenants"] == []


async def test_a_rejected_token_fails_the_tenant_once_without_retrying(cloud: Cloud) -> None:
    created = await cloud.create("7", access_token="EAAGwrong")
    assert created.status_code == 201
    failed = await cloud.server.wait_status("7", "failed")
    assert "access token" in failed["last_error"] and "190" in failed["last_error"]
    await asyncio.sleep(0.5)  # the test server retries after 0.05-0.2 s, were it to retry
    assert len(cloud.graph.requests) == 1
    assert (await cloud.server.status("7"))["status"] == "failed"


async def test_a_phone_number_id_belongs_to_one_tenant(cloud: Cloud) -> None:
    await cloud.create("7")
    again = await cloud.create("8")
    assert again.status_code == 409 and again.json()["error"]["code"] == "phone_number_id_in_use"
    assert (await cloud.http.get("/tenants/8/status")).status_code == 404


async def test_qr_and_pairing_code_are_409_for_cloud_tenants(cloud: Cloud) -> None:
    await cloud.create("7")
    for response in (
        await cloud.http.get("/tenants/7/qr"),
        await cloud.http.post("/tenants/7/pair-code", json={"phone": CUSTOMER}),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "pairing_not_supported"


async def test_logout_forgets_the_credentials_and_new_ones_reconnect(cloud: Cloud) -> None:
    await cloud.create("7")
    out = await cloud.http.post("/tenants/7/logout")
    assert out.json()["status"] == "logged_out"
    assert (await cloud.http.post("/tenants/7/start")).status_code == 200
    failed = await cloud.server.wait_status("7", "failed")  # nothing to connect with
    assert "no Cloud API credentials" in failed["last_error"]
    renewed = await cloud.http.put(
        "/tenants/7/cloud",
        json={
            "phone_number_id": NUMBER_ID,
            "access_token": TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY,
        },
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["status"] == "connected" and TOKEN not in renewed.text


async def test_new_credentials_are_refused_for_other_engines(cloud: Cloud) -> None:
    await cloud.server.create_paired("local")
    response = await cloud.http.put(
        "/tenants/local/cloud",
        json={"phone_number_id": "1", "access_token": "t", "app_secret": "s", "verify_token": "v"},
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_a_cloud_tenant"


async def test_a_deleted_tenant_leaves_its_number_free(cloud: Cloud) -> None:
    await cloud.create("7")
    assert (await cloud.http.delete("/tenants/7")).status_code == 200
    again = await cloud.create("8")
    assert again.status_code == 201 and again.json()["status"] == "connected"


async def test_a_token_rejected_while_sending_fails_the_tenant_and_keeps_the_message(
    cloud: Cloud,
) -> None:
    await cloud.create("7")
    cloud.graph.fail_next.append(TOKEN_EXPIRED)
    sent = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "oi"})
    assert sent.status_code == 202 and sent.json()["status"] == "queued"
    failed = await cloud.server.wait_status("7", "failed")
    assert "access token" in failed["last_error"]
    queued = await cloud.http.get(f"/tenants/7/messages/{sent.json()['message_id']}")
    assert queued.json()["status"] == "queued"
    await asyncio.sleep(0.3)
    assert cloud.graph.sent == []


async def test_sending_before_connect_is_refused(cloud: Cloud) -> None:
    await cloud.create("7", access_token="EAAGwrong")
    await cloud.server.wait_status("7", "failed")
    refused = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "oi"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "tenant_not_connected"


async def test_clear_all_purging_sessions_keeps_cloud_credentials(cloud: Cloud) -> None:
    """They are the tenant's configuration, not a WhatsApp Web session to pair again."""
    await cloud.create("7")
    cleared = await cloud.http.post("/clear-all", json={"purge_sessions": True})
    assert cleared.status_code == 200
    await cloud.server.wait_status("7", "connected")
