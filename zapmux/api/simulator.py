"""The sandbox's routes: be the phones of a simulated WhatsApp (``--engine sandbox``)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter

from zapmux.api.deps import AdminDep, GatewayDep, TenantDep
from zapmux.api.models import (
    FaultBody,
    PairBody,
    PhoneMessageBody,
    RegisterPhoneBody,
    ScanBody,
    VoteBody,
)
from zapmux.api.strict import SimulatorRoute
from zapmux.engines.sandbox import SandboxEngine
from zapmux.errors import InvalidInput, TenantNotFound
from zapmux.gateway import Gateway
from zapmux.ids import validate_tenant_id
from zapmux.phone import normalize_phone

router = APIRouter(prefix="/sandbox", tags=["sandbox"], route_class=SimulatorRoute)


def network(gw: Gateway) -> SandboxEngine:
    assert isinstance(gw.engine, SandboxEngine)
    return gw.engine


@router.post("/scan", summary="A phone scans a QR code (410 for an old one)")
async def scan(body: ScanBody, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    phone = normalize_phone(body.phone)
    tenant_id = await network(gw).scan(body.qr, phone)
    return {"success": True, "tenant_id": tenant_id, "phone": phone}


@router.post("/pair", summary="A phone enters a pairing code")
async def pair(body: PairBody, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    phone = normalize_phone(body.phone)
    tenant_id = await network(gw).pair(body.code, phone)
    return {"success": True, "tenant_id": tenant_id, "phone": phone}


async def _phone_and_tenant(gw: Gateway, sender: str | int, tenant: str | int) -> tuple[str, str]:
    """The sending phone and the tenant it writes to (which must exist)."""
    phone = normalize_phone(sender)
    tenant_id = validate_tenant_id(tenant)
    if not gw.tenants.has(tenant_id):
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return phone, tenant_id


@router.post("/messages", status_code=201, summary="A phone sends a message to a tenant")
async def phone_sends(body: PhoneMessageBody, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    phone, tenant_id = await _phone_and_tenant(gw, body.sender, body.tenant_id)
    media = None
    if body.media is not None:
        if not body.media.base64 or not body.media_kind:
            raise InvalidInput("sandbox media needs media.base64 and media_kind")
        try:
            base64.b64decode(body.media.base64, validate=True)
        except ValueError as exc:
            raise InvalidInput("media.base64 is not valid base64") from exc
        media = {
            "kind": body.media_kind,
            "data": body.media.base64,
            "mimetype": body.media.mimetype,
            "filename": body.media.filename,
        }
    message_id = await network(gw).send_from_phone(
        phone, tenant_id, body.text, media, body.message_id
    )
    return {"success": True, "message_id": message_id, "tenant_id": tenant_id, "from": phone}


@router.post("/votes", status_code=201, summary="A phone answers a question (votes in a poll)")
async def phone_votes(body: VoteBody, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    phone, tenant_id = await _phone_and_tenant(gw, body.sender, body.tenant_id)
    message_id = await network(gw).vote(phone, tenant_id, body.message_id, body.options)
    return {"success": True, "message_id": message_id, "tenant_id": tenant_id, "from": phone}


@router.get("/phones/{phone}/messages", summary="What a phone received")
async def phone_inbox(phone: str, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    messages = await network(gw).phone_messages(phone)
    return {
        "success": True,
        "phone": normalize_phone(phone),
        "messages": [m.public() for m in messages],
    }


@router.post("/phones", status_code=201, summary="Register a phone (on WhatsApp or not)")
async def register_phone(body: RegisterPhoneBody, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    phone = await network(gw).register_phone(normalize_phone(body.phone), body.on_whatsapp)
    return {"success": True, "phone": phone, "on_whatsapp": body.on_whatsapp}


@router.post("/phones/{phone}/read", summary="The phone reads what it received")
async def phone_reads(phone: str, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    count = await network(gw).read(normalize_phone(phone))
    return {"success": True, "read": count}


@router.post("/tenants/{tenant_id}/fault", summary="Inject a fault into a tenant's connection")
async def fault(_: AdminDep, tenant: TenantDep, body: FaultBody, gw: GatewayDep) -> dict[str, Any]:
    await network(gw).fault(tenant.id, body.kind)
    return {"success": True, "tenant_id": tenant.id, "fault": body.kind}


@router.post("/reset", summary="Forget every phone, session and message of the sandbox")
async def reset(gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    await network(gw).reset()
    return {"success": True}
