"""The Flask example app's webhook: signatures, replay window, dedupe; its send route's errors."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from zapmux.outbox import sign

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"
APP_PATH = EXAMPLE / "app.py"
SECRET = "s3cret"


def load_example() -> ModuleType:
    # The example is a script, not a package: load it from its path as a user would run it.
    spec = importlib.util.spec_from_file_location("flask_example_app", APP_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example()


@pytest.fixture
def client(example: ModuleType, tmp_path: Path) -> Any:
    app = example.create_app({"DATABASE": str(tmp_path / "agenda.db"), "WEBHOOK_SECRET": SECRET})
    return app.test_client()


def payload(text: str = "Quero marcar um horário", message_id: str = "M1") -> bytes:
    body = {
        "phone": "5511977776666",
        "message": text,
        "message_type": "texto",
        "empresa_id": 1,
        "message_id": message_id,
        "timestamp": int(time.time()),
        "push_name": "Maria",
        "chat": "5511977776666@s.whatsapp.net",
        "is_group": False,
        "from_me": False,
        "tenant_id": "1",
    }
    return json.dumps(body).encode()


def signed(body: bytes, delivery: str, secret: str = SECRET, ts: int | None = None) -> dict:
    # Signed by zapmux's own signer, so the example is checked against what the server sends.
    timestamp = str(int(time.time()) if ts is None else ts)
    return {
        "Content-Type": "application/json",
        "X-Zapmux-Delivery": delivery,
        "X-Zapmux-Timestamp": timestamp,
        "X-Zapmux-Signature": sign(secret, timestamp, body),
    }


def stored(client: Any) -> dict:
    return client.get("/api/messages").get_json()


def test_a_signed_message_is_stored_with_its_fields(client: Any) -> None:
    response = client.post("/webhook/whatsapp", data=payload(), headers=signed(payload(), "d1"))
    assert response.status_code == 200
    assert response.get_json()["stored"] is True
    [message] = stored(client)["messages"]
    assert message["phone"] == "5511977776666"
    assert message["message"] == "Quero marcar um horário"
    assert message["empresa_id"] == "1" and message["delivery_id"] == "d1"
    assert message["payload"]["push_name"] == "Maria"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(signed(payload(), "d1", secret="wrong"), id="wrong-secret"),
        pytest.param({"X-Zapmux-Delivery": "d1"}, id="unsigned"),
        pytest.param(signed(b"{}", "d1"), id="signature-of-another-body"),
        pytest.param(signed(payload(), "d1", ts=int(time.time()) - 400), id="expired"),
        pytest.param(signed(payload(), "d1", ts=int(time.time()) + 400), id="future"),
        pytest.param({**signed(payload(), "d1"), "X-Zapmux-Timestamp": "soon"}, id="bad-ts"),
    ],
)
def test_a_bad_or_stale_signature_is_refused_and_nothing_stored(client: Any, headers: dict) -> None:
    response = client.post("/webhook/whatsapp", data=payload(), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "bad_signature"
    assert stored(client)["messages"] == []


def test_a_signature_within_the_window_is_accepted(client: Any) -> None:
    headers = signed(payload(), "d1", ts=int(time.time()) - 250)
    assert client.post("/webhook/whatsapp", data=payload(), headers=headers).status_code == 200


def test_a_redelivery_answers_200_is_counted_and_not_stored_twice(client: Any) -> None:
    for _ in range(3):
        response = client.post("/webhook/whatsapp", data=payload(), headers=signed(payload(), "d1"))
        assert response.status_code == 200
    other = payload("outra", "M2")
    client.post("/webhook/whatsapp", data=other, headers=signed(other, "d2"))
    listing = stored(client)
    assert [m["delivery_id"] for m in listing["messages"]] == ["d2", "d1"]
    assert listing["duplicates"] == 2
    assert client.get("/health").get_json() == {"status": "ok", "messages": 2, "duplicates": 2}


def test_without_a_secret_unsigned_deliveries_are_accepted(
    example: ModuleType, tmp_path: Path
) -> None:
    app = example.create_app({"DATABASE": str(tmp_path / "a.db"), "WEBHOOK_SECRET": None})
    client = app.test_client()
    body = payload()
    response = client.post("/webhook/whatsapp", data=body, content_type="application/json")
    assert response.status_code == 200
    assert len(stored(client)["messages"]) == 1


def test_bad_json_is_400_and_other_events_are_ignored(client: Any) -> None:
    assert client.post("/webhook/whatsapp", data=b"{", headers=signed(b"{", "x")).status_code == 400
    envelope = json.dumps({"event": "status", "tenant_id": "1", "data": {}}).encode()
    response = client.post("/webhook/whatsapp", data=envelope, headers=signed(envelope, "e1"))
    assert response.status_code == 200 and response.get_json()["ignored"] is True
    assert stored(client)["messages"] == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_send_needs_chat_id_and_message(client: Any) -> None:
    response = client.post("/api/whatsapp/send", json={"chat_id": "5511988887777"})
    assert response.status_code == 400


def test_send_says_502_when_zapmux_is_down(example: ModuleType, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    app = example.create_app({"DATABASE": str(tmp_path / "a.db"), "WHATSAPP_API_URL": url})
    response = app.test_client().post(
        "/api/whatsapp/send", json={"chat_id": "5511988887777", "message": "oi"}
    )
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "zapmux_unreachable"


def test_the_readme_verification_snippet_accepts_zapmux_signatures_only() -> None:
    readme = (EXAMPLE / "README.md").read_text()
    [snippet] = re.findall(r"```python\n(.*?)```", readme, re.S)
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify = namespace["verify"]
    body = payload()
    assert verify(SECRET, signed(body, "d1"), body) is True
    assert verify(SECRET, signed(body, "d1"), body + b" ") is False
    assert verify("other", signed(body, "d1"), body) is False
    assert verify(SECRET, signed(body, "d1", ts=int(time.time()) - 400), body) is False
