"""GET /metrics: Prometheus text, every name prefixed zapmux_."""

from __future__ import annotations

import re

from tests.helpers import LiveServer, Receiver, wait_for

EXPECTED = {
    "zapmux_tenants",
    "zapmux_messages_received_total",
    "zapmux_messages_sent_total",
    "zapmux_send_latency_seconds",
    "zapmux_deliveries",
    "zapmux_delivery_latency_seconds",
    "zapmux_worker_restarts_total",
    "zapmux_reconnect_attempts_total",
}
SAMPLE = re.compile(
    r'^(zapmux_[a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+inf]+$', re.I
)


def parse(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


async def test_metric_names_and_values(server: LiveServer, receiver: Receiver) -> None:
    await server.create_paired("m1")
    await server.http.post("/send/m1", json={"phone": "5511999999999", "message": "x"})
    await server.http.post(
        "/sandbox/messages", json={"from": "5511999999999", "tenant_id": "m1", "text": "y"}
    )
    await wait_for(lambda: _delivered(server), what="a delivery")
    await server.http.post("/sandbox/tenants/m1/fault", json={"kind": "disconnect"})
    await wait_for(lambda: _reconnected(server), what="a reconnect")

    response = await server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = set(re.findall(r"^# TYPE (\S+) ", response.text, re.M))
    assert EXPECTED <= families
    assert all(name.startswith("zapmux_") for name in families)
    samples = parse(response.text)
    assert samples['zapmux_tenants{state="connected"}'] == 1
    assert samples["zapmux_messages_sent_total"] == 1
    assert samples["zapmux_messages_received_total"] == 1
    assert samples['zapmux_deliveries{status="delivered"}'] == 1
    assert samples["zapmux_reconnect_attempts_total"] >= 1
    assert samples["zapmux_send_latency_seconds_count"] == 1
    assert samples["zapmux_delivery_latency_seconds_count"] == 1


async def _delivered(server: LiveServer) -> bool:
    body = (await server.http.get("/deliveries", params={"status": "delivered"})).json()
    return bool(body["deliveries"])


async def _reconnected(server: LiveServer) -> bool:
    status = await server.status("m1")
    return status["status"] == "connected" and status["reconnect_attempts"] >= 1


async def test_a_failed_webhook_attempt_is_counted_as_failed(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("m2")
    receiver.statuses = [503]  # the first attempt fails, the retry goes through
    await server.http.post(
        "/sandbox/messages", json={"from": "5511999999999", "tenant_id": "m2", "text": "y"}
    )
    await wait_for(lambda: _delivered(server), what="a delivery after a retry")
    samples = parse((await server.http.get("/metrics")).text)
    assert samples['zapmux_webhook_attempts_total{outcome="failed"}'] == 1
    assert samples['zapmux_webhook_attempts_total{outcome="delivered"}'] == 1
    assert 'zapmux_webhook_attempts_total{outcome="pending"}' not in samples
