"""Logs never hold a key, a token or a secret, whatever the server is asked to do.

The server runs as an operator runs it (``python -m zapmux serve``, DEBUG level) and
everything it writes is searched for every secret it was given or gave out.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Receiver, make_settings, wait_for
from tests.process import ServerProcess
from tests.security.common import ADMIN_KEY, PHONE, admin, bearer
from zapmux import logs

GLOBAL_SECRET = "global-webhook-secret-5f1e"
TENANT_SECRET = "tenant-webhook-secret-77aa"
URL_PASSWORD = "url-password-c0ffee"
URL_TOKEN = "url-query-token-beef42"


async def exercise(http: httpx.AsyncClient, receiver: Receiver) -> list[str]:
    """Everything that handles a secret; the tokens it was given back."""
    created = await http.post("/tenants", json={"tenantId": "loja"}, headers=admin())
    assert created.status_code == 201, created.text
    first = created.json()["token"]
    rotated = await http.post("/tenants/loja/token", headers=admin())
    second = rotated.json()["token"]
    assert (await http.get("/tenants/loja/status", headers=bearer(first))).status_code == 401
    await http.get("/tenants", headers=admin("wrong-" + ADMIN_KEY))
    await http.get("/tenants/loja/status", headers={"X-Api-Key": second})

    hook = f"http://user:{URL_PASSWORD}@127.0.0.1:{receiver.port}/hook?token={URL_TOKEN}"
    put = await http.put(
        "/tenants/loja/webhook",
        json={"url": hook, "secret": TENANT_SECRET, "events": ["message", "status", "qr"]},
        headers=bearer(second),
    )
    assert put.status_code == 200, put.text

    async def qr() -> str | None:
        answer = await http.get("/tenants/loja/qr", headers=bearer(second))
        return answer.json().get("qr")

    code = await wait_for(qr, what="a QR code")
    await http.post("/sandbox/scan", json={"qr": code, "phone": "5511988880000"}, headers=admin())
    for _ in range(3):
        await http.post(
            "/send/loja", json={"phone": PHONE, "message": "oi"}, headers=bearer(second)
        )
    message = {"from": PHONE, "tenant_id": "loja", "text": "olá"}
    await http.post("/sandbox/messages", json=message, headers=admin())
    await http.post("/webhook", json={"phone": PHONE, "message": "relay"}, headers=admin())
    for key, path in ((ADMIN_KEY, "/events"), (second, "/tenants/loja/events")):
        async with http.stream("GET", path, params={"api_key": key}) as stream:
            assert stream.status_code == 200
    await wait_for(lambda: receiver.got(3), timeout=15, what="failed deliveries")
    return [first, second]


def documented_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The ``verify`` function of docs/security.md, run as a reader would copy it."""
    text = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("log_format", ["pretty", "json"])
async def test_logs_hold_no_secret(tmp_path: Path, log_format: str) -> None:
    async with Receiver(status=500) as receiver:
        async with ServerProcess(
            tmp_path,
            ZAPMUX_API_KEY=ADMIN_KEY,
            ZAPMUX_WEBHOOK_SECRET=GLOBAL_SECRET,
            ZAPMUX_FLASK_URL=f"http://127.0.0.1:{receiver.port}",
            ZAPMUX_LOG_LEVEL="DEBUG",
            ZAPMUX_LOG_FORMAT=log_format,
            ZAPMUX_DELIVERY_BACKOFF_CAP_S="0.2",
            ZAPMUX_DELIVERY_TIMEOUT_S="2",
            # the tenant token sets a loopback webhook: allowed only for listed hosts
            ZAPMUX_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        ) as server:
            tokens = await exercise(server.http, receiver)
    # every delivery was signed, and the receiver's check in docs/security.md accepts it
    verify = documented_verify()
    for received in receiver.received:
        secret = TENANT_SECRET if received.path == "/hook" else GLOBAL_SECRET
        assert verify(secret, received.headers, received.body), received
        assert not verify("another-secret", received.headers, received.body)
    output = server.output()
    assert "webhook" in output and "failed" in output, output[-3000:]  # failures were logged
    for secret in (ADMIN_KEY, GLOBAL_SECRET, TENANT_SECRET, URL_PASSWORD, URL_TOKEN, *tokens):
        assert secret not in output, f"{secret!r} leaked into the log:\n{output[-3000:]}"


@pytest.mark.parametrize("log_format", ["pretty", "json"])
def test_tracebacks_are_redacted_too(tmp_path: Path, log_format: str) -> None:
    settings = make_settings(
        tmp_path, api_key=ADMIN_KEY, webhook_secret=GLOBAL_SECRET, log_format=log_format
    )
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(settings, stream)
        try:
            url = f"https://u:{URL_PASSWORD}@hooks.example.com/h?token={URL_TOKEN}&key={ADMIN_KEY}"
            raise RuntimeError(f"cannot post to {url} with {GLOBAL_SECRET} zt_abcdefghijklmnop")
        except RuntimeError:
            logging.getLogger("zapmux.tenant.loja").exception("❌ failed for %s", ADMIN_KEY)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    output = stream.getvalue()
    assert "RuntimeError" in output and "hooks.example.com" in output
    for secret in (ADMIN_KEY, GLOBAL_SECRET, URL_PASSWORD, URL_TOKEN, "zt_abcdefghijklmnop"):
        assert secret not in output, output
