"""A cloud tenant's secrets never reach the log of a real server process at DEBUG,
through everything that handles them: creation, connecting, a refused token,
sending, throttling, new credentials, the webhook handshake and signed posts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.engines.cloud.conftest import APP_SECRET, CUSTOMER, NUMBER_ID, TOKEN, VERIFY, credentials
from tests.fake_graph import THROTTLED, FakeGraph, message_post, signed, status_post
from tests.helpers import wait_for
from tests.process import ServerProcess

WRONG_TOKEN = "EAAGwrongtokenthatmetarefuses0123456789"


async def exercise(http: httpx.AsyncClient, graph: FakeGraph) -> None:
    created = await http.post(
        "/tenants", json={"tenantId": "7", "engine": "cloud", "cloud": credentials()}
    )
    assert created.json()["status"] == "connected", created.text
    refused = credentials(number="2", token=WRONG_TOKEN)
    await http.post("/tenants", json={"tenantId": "8", "engine": "cloud", "cloud": refused})
    graph.fail_next.append(THROTTLED)
    for text in ("um", "dois"):
        await http.post("/send/7", json={"phone": CUSTOMER, "message": text})
    await wait_for(lambda: _sent(graph, 2), timeout=15, what="both sends at Meta")
    for token in (VERIFY, "not-the-verify-token"):
        query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"}
        await http.get("/cloud/webhook", params=query)
    for body in (
        message_post(NUMBER_ID, CUSTOMER, {"type": "text", "text": {"body": "oi"}}),
        status_post(NUMBER_ID, graph.wamids[0], "failed", CUSTOMER, error_code=131047),
    ):
        raw, headers = signed(body, APP_SECRET)
        assert (await http.post("/cloud/webhook", content=raw, headers=headers)).status_code == 200
        raw, headers = signed(body, "a-wrong-secret")
        assert (await http.post("/cloud/webhook", content=raw, headers=headers)).status_code == 403
    await http.put("/tenants/8/cloud", json=credentials(number="2", token=WRONG_TOKEN))


async def _sent(graph: FakeGraph, count: int) -> bool:
    return len(graph.sent) >= count


@pytest.mark.parametrize("log_format", ["pretty", "json"])
async def test_cloud_secrets_never_reach_the_log(tmp_path: Path, log_format: str) -> None:
    async with FakeGraph() as graph:
        graph.register(NUMBER_ID, TOKEN)
        graph.register("2", "EAAGthetokenmetaissuedforit")
        async with ServerProcess(
            tmp_path,
            ZAPMUX_CLOUD_API_URL=graph.url,
            ZAPMUX_LOG_LEVEL="DEBUG",
            ZAPMUX_LOG_FORMAT=log_format,
        ) as server:
            await exercise(server.http, graph)
    output = server.output()
    assert "rejected the access token" in output and "message from" in output, output[-3000:]
    for secret in (TOKEN, WRONG_TOKEN, APP_SECRET, VERIFY):
        assert secret not in output, f"{secret!r} leaked into the log:\n{output[-3000:]}"
