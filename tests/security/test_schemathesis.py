"""Fuzzing: every operation of /openapi.json against a live sandbox server (admin key).

No input may cause a 5xx, and every response must match the schema declared for it.
Bounded (25 examples per operation) so that it stays well inside CI's time.

The operations are walked by hand rather than with ``schemathesis.pytest.from_fixture``:
its lazy loader sets ``request.node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.process import ServerProcess

ADMIN_KEY = "fuzz-admin-key-0123456789"
HEADERS = {"X-Api-Key": ADMIN_KEY}
EXAMPLES_PER_OPERATION = 25
TENANT = "fuzz"


def ensure_paired(url: str) -> None:
    """The tenant ``fuzz`` exists and is connected, so fuzzed calls on it go deep."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=15) as http:
        status = http.get(f"/tenants/{TENANT}/status")
        if status.status_code == 404:
            assert http.post("/tenants", json={"tenant_id": TENANT}).status_code == 201
        elif status.json()["status"] == "connected":
            return
        http.post(f"/sandbox/tenants/{TENANT}/fault", json={"kind": "network_up"})
        for _ in range(50):
            answer = http.get(f"/tenants/{TENANT}/qr")
            qr = answer.json()
            if qr.get("status") == "connected":
                return
            if answer.status_code == 409:  # banned or replaced by an injected fault
                http.post(f"/tenants/{TENANT}/start")
            elif qr.get("qr"):
                http.post("/sandbox/scan", json={"qr": qr["qr"], "phone": "5511900001111"})
            time.sleep(0.1)
        raise AssertionError(f"could not pair {TENANT}: {qr}")


def fuzz(operation: schemathesis.APIOperation, seen: dict[int, int]) -> None:
    """Valid and invalid inputs for one operation, each response checked; a third of the
    valid ones aimed at a paired tenant so that they get past the tenant lookup."""
    cases = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{tenant_id}" in operation.path:
        cases.append(operation.as_strategy(path_parameters={"tenant_id": TENANT}))

    @given(case=st.one_of(cases))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            headers=HEADERS, timeout=15, checks=[not_a_server_error, response_schema_conformance]
        )
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    run()


def test_no_input_breaks_the_api(tmp_path: Path) -> None:
    with ServerProcess(
        tmp_path,
        ZAPMUX_API_KEY=ADMIN_KEY,
        ZAPMUX_LOG_LEVEL="WARNING",
        ZAPMUX_SANDBOX_QR_SECONDS="5",
        ZAPMUX_RECONNECT_CAP_S="0.5",
    ) as live:
        schema = schemathesis.openapi.from_url(
            f"{live.url}/openapi.json", headers=HEADERS, timeout=10
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        failures: list[str] = []
        seen: dict[int, int] = {}
        for operation in operations:
            ensure_paired(live.url)
            try:
                fuzz(operation, seen)
            except Exception as exc:  # collect every operation's failure, not just the first
                failures.append(f"{operation.label}: {exc}")
        server_log = live.output()
    print("statuses seen:", dict(sorted(seen.items())))
    assert len(operations) >= 30, [op.label for op in operations]
    assert not failures, "\n\n".join(failures) + "\n\nserver log:\n" + server_log[-5000:]
