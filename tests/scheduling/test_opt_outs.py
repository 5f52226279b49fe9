"""Opt-outs: a keyword from a customer stops further sends until the tenant lifts it."""

from __future__ import annotations

import time

import pytest

from tests.helpers import LiveServer, Receiver, wait_for
from tests.scheduling.steps import webhook_messages
from tests.sending.steps import send, wait_message_status

PHONE = "5511977440001"


async def test_a_keyword_opts_out_and_still_reaches_the_webhook(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("clinica")
    await server.customer_says(PHONE, "clinica", "  Sáir! ")
    [payload] = await webhook_messages(receiver, 1)
    assert payload["opt_out"] is True and payload["message"] == "  Sáir! "
    listed = (await server.http.get("/tenants/clinica/opt-outs")).json()["opt_outs"]
    assert [(o["phone"], o["keyword"]) for o in listed] == [(PHONE, "SAIR")]
    assert listed[0]["message_id"] == payload["message_id"]

    refused = await send(server, "clinica", PHONE, "Lembrete")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "opted_out"
    # the same person without the ninth digit, and a scheduled send: refused too
    other_spelling = await send(server, "clinica", "551177440001", "Lembrete")
    assert other_spelling.status_code == 409
    later = await send(server, "clinica", PHONE, "Lembrete", send_at=time.time() + 60)
    assert later.status_code == 409 and later.json()["error"]["code"] == "opted_out"

    lifted = await server.http.delete(f"/tenants/clinica/opt-outs/{PHONE}")
    assert lifted.status_code == 200, lifted.text
    assert (await send(server, "clinica", PHONE, "Bem-vindo de volta")).status_code == 200
    gone = await server.http.delete(f"/tenants/clinica/opt-outs/{PHONE}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "opt_out_not_found"


@pytest.mark.parametrize("text", ["CANCELAR", "quero sair do grupo", "pare de mandar, por favor"])
async def test_other_texts_do_not_opt_out(
    server: LiveServer, receiver: Receiver, text: str
) -> None:
    await server.create_paired("clinica")
    await server.customer_says(PHONE, "clinica", text)
    [payload] = await webhook_messages(receiver, 1)
    assert "opt_out" not in payload and payload["message"] == text
    assert (await server.http.get("/tenants/clinica/opt-outs")).json()["opt_outs"] == []
    assert (await send(server, "clinica", PHONE, "ok")).status_code == 200


async def test_keywords_are_set_per_tenant(server: LiveServer, receiver: Receiver) -> None:
    await server.create_paired("clinica")
    defaults = (await server.http.get("/tenants/clinica/opt-out-keywords")).json()
    assert defaults["keywords"] == ["SAIR", "PARAR", "STOP", "DESCADASTRAR"]
    assert defaults["default"] is True
    put = await server.http.put(
        "/tenants/clinica/opt-out-keywords", json={"keywords": [" Chega ", "chegá", "NÃO QUERO"]}
    )
    assert put.status_code == 200, put.text
    assert (put.json()["keywords"], put.json()["default"]) == (["Chega", "NÃO QUERO"], False)

    await server.customer_says(PHONE, "clinica", "sair")  # no longer a keyword here
    await server.customer_says("5511944440002", "clinica", "nao quero.")
    first, second = await webhook_messages(receiver, 2)
    assert "opt_out" not in first and second["opt_out"] is True
    phones = [
        o["phone"] for o in (await server.http.get("/tenants/clinica/opt-outs")).json()["opt_outs"]
    ]
    assert phones == ["5511944440002"]

    off = await server.http.put("/tenants/clinica/opt-out-keywords", json={"keywords": []})
    assert off.json()["keywords"] == []
    back = await server.http.put("/tenants/clinica/opt-out-keywords", json={"keywords": None})
    assert back.json()["default"] is True and "SAIR" in back.json()["keywords"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"keywords": ["  "]}, 400),
        ({"keywords": ["!!!"]}, 400),
        ({"keywords": ["x" * 65]}, 400),
        ({"keywords": "SAIR"}, 422),
        ({"keywords": ["SAIR"], "extra": 1}, 422),
        ({}, 422),
    ],
)
async def test_bad_keywords_are_refused_and_change_nothing(
    server: LiveServer, body: object, status: int
) -> None:
    await server.create_paired("clinica")
    refused = await server.http.put("/tenants/clinica/opt-out-keywords", json=body)
    assert refused.status_code == status, refused.text
    assert refused.json()["success"] is False
    kept = (await server.http.get("/tenants/clinica/opt-out-keywords")).json()
    assert kept["default"] is True


async def test_a_scheduled_send_fails_at_its_time_once_opted_out(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("clinica")
    scheduled = await send(server, "clinica", PHONE, "Lembrete", send_at=time.time() + 1.5)
    assert scheduled.status_code == 202
    await server.customer_says(PHONE, "clinica", "PARAR")
    await webhook_messages(receiver, 1)
    failed = await wait_message_status(server, "clinica", scheduled.json()["message_id"], "failed")
    assert failed["error_code"] == "opted_out" and "PARAR" in failed["error"]


async def test_a_deleted_tenant_leaves_no_opt_outs(server: LiveServer, receiver: Receiver) -> None:
    await server.create_paired("clinica")
    await server.customer_says(PHONE, "clinica", "STOP")
    await webhook_messages(receiver, 1)
    assert (await server.http.delete("/tenants/clinica")).status_code == 200

    async def gone() -> bool:
        return (await server.http.get("/tenants/clinica/status")).status_code == 404

    await wait_for(gone, what="the tenant to be deleted")
    await server.create_paired("clinica", phone="5511988880001")
    assert (await server.http.get("/tenants/clinica/opt-outs")).json()["opt_outs"] == []
    assert (await send(server, "clinica", PHONE, "oi")).status_code == 200
