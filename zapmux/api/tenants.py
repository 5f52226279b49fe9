"""Tenants: create, list, pair (QR or code), start/stop/restart/logout, delete, token."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from zapmux.api.deps import AdminDep, GatewayDep, TenantDep
from zapmux.api.forward import FORWARDED
from zapmux.api.models import ClearAllBody, CloudCredentials, CreateTenant, PairCodeBody
from zapmux.api.strict import StrictRoute
from zapmux.auth import hash_token, new_token
from zapmux.errors import NotSupported, Unprocessable
from zapmux.gateway import Gateway
from zapmux.ids import validate_tenant_id
from zapmux.phone import normalize_phone
from zapmux.qr import qr_data_url, qr_png, qr_text
from zapmux.reasons import reason
from zapmux.redact import redact_urls
from zapmux.states import Status
from zapmux.store.records import CloudAccount, TenantRecord
from zapmux.supervisor import Pairing

router = APIRouter(tags=["tenants"], route_class=StrictRoute)


def tenant_view(record: TenantRecord, default_engine: str) -> dict[str, Any]:
    """A tenant as listed and as ``/status`` shows it (the store is shared by nodes).

    A cloud tenant's credentials are never part of it; its ``phone`` and ``push_name``
    are the number's display number and verified name at Meta."""
    return {
        "tenant_id": record.id,
        "engine": record.engine or default_engine,
        "status": record.status,
        "connected": record.status == Status.CONNECTED,
        "phone": record.phone,
        "push_name": record.push_name,
        "jid": record.jid,
        "since": record.since,
        "reason": reason(record.status, record.phone, record.jid),
        "last_error": record.last_error,
        "detail": record.detail,
        "reconnect_attempts": record.reconnect_attempts,
        "next_retry_at": record.next_retry_at,
        "wanted": record.wanted,
        "webhook_url": redact_urls(record.webhook_url) if record.webhook_url else None,
        "created_at": record.created_at,
    }


async def _view(gw: Gateway, tenant_id: str) -> dict[str, Any]:
    record = await gw.tenants.get_tenant(tenant_id)
    assert record is not None
    return tenant_view(record, gw.settings.engine)


@router.get("/tenants", summary="List tenants (by id; pages with ?limit= and ?after=)")
async def list_tenants(
    gw: GatewayDep,
    _: AdminDep,
    limit: int | None = Query(None, ge=1, le=10_000, description="a page's size (else all)"),
    after: str | None = Query(None, max_length=64, description="the previous page's `next`"),
) -> JSONResponse:
    records = await gw.tenants.list_tenants(after, limit)
    body = {"success": True, "tenants": [tenant_view(r, gw.settings.engine) for r in records]}
    return JSONResponse({**body, "next": next_page(records, limit)})


def next_page(records: list[TenantRecord], limit: int | None) -> str | None:
    """The cursor of the page after ``records`` (None when this was the last one)."""
    return records[-1].id if limit is not None and len(records) == limit else None


@router.post(
    "/tenants",
    status_code=201,
    summary="Create a tenant and start pairing (or, for engine cloud, connecting)",
)
async def create_tenant(body: CreateTenant, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    tenant_id = validate_tenant_id(body.tenant_id)
    engine = body.engine or gw.settings.engine
    _check_credentials(engine, body.cloud)
    token = new_token()
    cloud = body.cloud

    async def save_credentials() -> None:
        if cloud is not None:
            await gw.store.cloud_save(_account(tenant_id, cloud))

    await gw.cluster.create_tenant(
        TenantRecord(id=tenant_id, engine=engine, token_hash=hash_token(token)),
        setup=save_credentials,
    )
    await gw.supervisor.start(tenant_id)
    view = await _view(gw, tenant_id)
    return {"success": True, **view, "tenant": view, "token": token}


def _check_credentials(engine: str, cloud: CloudCredentials | None) -> None:
    if engine == "cloud" and cloud is None:
        raise Unprocessable(
            'engine cloud needs "cloud": {"phone_number_id", "access_token", '
            '"app_secret", "verify_token"} (see docs/cloud.md)',
            missing=["cloud"],
        )
    if engine != "cloud" and cloud is not None:
        raise Unprocessable(f'"cloud" credentials are for engine cloud, not {engine}')


def _account(tenant_id: str, cloud: CloudCredentials) -> CloudAccount:
    return CloudAccount(tenant_id=tenant_id, **cloud.model_dump())


@router.get("/tenants/{tenant_id}/status", summary="A tenant's state")
async def tenant_status(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    return {"success": True, **tenant_view(tenant, gw.settings.engine)}


@router.get(
    "/tenants/{tenant_id}/qr",
    summary="The QR code to scan (starts pairing on demand)",
    responses={200: {"content": {"image/png": {}, "text/plain": {}}}},
)
async def tenant_qr(
    tenant: TenantDep, gw: GatewayDep, format: str = Query("json", pattern="^(json|png|text)$")
) -> Response:
    pairing = await gw.supervisor.pair(tenant.id)
    qr = pairing.qr
    if qr is None:
        return _no_qr(tenant.id, pairing)
    if format == "png":
        return Response(qr_png(qr.code), media_type="image/png")
    if format == "text":
        return PlainTextResponse(qr_text(qr.code))
    return JSONResponse(
        {
            "success": True,
            "tenant_id": tenant.id,
            "status": "awaiting_qr",
            "qr": qr.code,
            "qr_image": qr_data_url(qr.code),
            "expires_at": qr.expires_at,
            "index": qr.index,
            "total": qr.total,
        }
    )


def _no_qr(tenant_id: str, pairing: Pairing) -> JSONResponse:
    """No code to show: connected (200), or on its way to one (202: ask again)."""
    body = {
        "success": True,
        "tenant_id": tenant_id,
        "status": pairing.status.value,
        "qr": None,
        "qr_image": None,
        "expires_at": None,
    }
    if pairing.status == Status.CONNECTED:
        return JSONResponse(body)
    return JSONResponse(body, status_code=202, headers={"Retry-After": "1"})


@router.post("/tenants/{tenant_id}/pair-code", summary="Pair by a code typed on the phone")
async def pair_code(tenant: TenantDep, body: PairCodeBody, gw: GatewayDep) -> dict[str, Any]:
    phone = normalize_phone(body.phone)
    code = await gw.supervisor.pair_code(tenant.id, phone)
    return {"success": True, "tenant_id": tenant.id, "phone": phone, "code": code}


@router.post("/tenants/{tenant_id}/start", summary="Connect (or start pairing)")
async def start_tenant(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    await gw.supervisor.start(tenant.id)
    return {"success": True, **await _view(gw, tenant.id)}


@router.post("/tenants/{tenant_id}/stop", summary="Disconnect and stay stopped")
async def stop_tenant(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    await gw.supervisor.stop(tenant.id)
    return {"success": True, **await _view(gw, tenant.id)}


@router.post("/tenants/{tenant_id}/restart", summary="Close and reopen the connection")
@router.post("/restart/{tenant_id}", summary="Close and reopen the connection (seed route)")
async def restart_tenant(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    await gw.supervisor.restart(tenant.id)
    return {
        "success": True,
        "message": f"tenant {tenant.id} restarted",
        **await _view(gw, tenant.id),
    }


@router.post("/tenants/{tenant_id}/logout", summary="Unlink the device and wipe the session")
async def logout_tenant(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    await gw.supervisor.logout(tenant.id)
    return {"success": True, **await _view(gw, tenant.id)}


@router.delete("/tenants/{tenant_id}", summary="Log out, remove the session and the tenant (admin)")
async def delete_tenant(tenant: TenantDep, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    await gw.supervisor.delete(tenant.id)
    return {"success": True, "tenant_id": tenant.id, "deleted": True}


@router.put("/tenants/{tenant_id}/cloud", summary="Give a cloud tenant new Meta credentials")
async def replace_credentials(
    tenant: TenantDep, body: CloudCredentials, gw: GatewayDep
) -> dict[str, Any]:
    """New credentials (a new access token, after a logout): stored, then it reconnects."""
    runner = gw.supervisor.runner(tenant.id)
    if runner.engine.name != "cloud":
        raise NotSupported(
            f"tenant {tenant.id} uses the {runner.engine.name} engine, not cloud",
            code="not_a_cloud_tenant",
        )
    await gw.store.cloud_save(_account(tenant.id, body))
    await gw.supervisor.restart(tenant.id)
    return {"success": True, **await _view(gw, tenant.id)}


@router.post("/tenants/{tenant_id}/token", summary="Rotate the tenant's token")
async def rotate_token(tenant: TenantDep, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    token = new_token()
    await gw.tenants.update_tenant(tenant.id, token_hash=hash_token(token))
    return {"success": True, "tenant_id": tenant.id, "token": token}


@router.post("/clear-all", summary="Reset every connection and retry counter, start all again")
async def clear_all(
    request: Request, gw: GatewayDep, _: AdminDep, body: ClearAllBody | None = None
) -> dict[str, Any]:
    purge = bool(body and body.purge_sessions)
    count = await gw.supervisor.clear_all(purge)
    if FORWARDED.decode() not in request.headers:  # asked by a person: every node clears
        count += await gw.cluster.broadcast(
            request.url.path, {"purge_sessions": purge}, dict(request.headers)
        )
    return {
        "success": True,
        "tenants": count,
        "purged_sessions": purge,
        "at": time.time(),
        "message": f"{count} tenant(s) restarted" + (" with sessions wiped" if purge else ""),
    }
