"""Dependencies shared by the routes: the gateway, the caller, the tenant in the path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from zapmux.auth import Principal, hash_token, same
from zapmux.errors import Forbidden, TenantNotFound, Unauthorized
from zapmux.gateway import Gateway
from zapmux.ids import validate_tenant_id
from zapmux.store.records import TenantRecord


async def gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain ``def`` dependency in a thread, a hop per request
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(gateway)]


BROWSER_PAGES = frozenset({"/docs", "/openapi.json"})


def credential(request: Request) -> str | None:
    """The key or token presented: ``X-Api-Key``, ``Authorization: Bearer``, or
    ``?api_key=`` where a browser cannot send headers: event streams (EventSource) and
    the API docs page with its schema."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if request.url.path.endswith("/events") or request.url.path in BROWSER_PAGES:
        return request.query_params.get("api_key")
    return None


async def caller(request: Request, gw: GatewayDep) -> Principal:
    """Admin when the admin key matches (or none is configured), else a tenant's token
    holder; 401 for no credential or one that matches nothing."""
    api_key = gw.settings.api_key
    if not api_key:
        return Principal()  # no key configured: loopback only, everyone is admin
    key = credential(request)
    if key is None:
        raise Unauthorized()
    if same(key, api_key):
        return Principal()
    tenant = await gw.tenants.tenant_by_token_hash(hash_token(key))
    if tenant is None:
        raise Unauthorized("that API key or tenant token is not valid")
    return Principal(tenant_id=tenant.id)


CallerDep = Annotated[Principal, Depends(caller)]


async def require_admin(who: CallerDep) -> Principal:
    if not who.is_admin:
        raise Forbidden("this route needs the admin key")
    return who


AdminDep = Annotated[Principal, Depends(require_admin)]


async def tenant_record(tenant_id: str, who: CallerDep, gw: GatewayDep) -> TenantRecord:
    """The tenant named in the path, once the caller may use it (400/401/403/404)."""
    tenant_id = validate_tenant_id(tenant_id)
    if not who.may_use(tenant_id):
        raise Forbidden("this token does not grant access to that tenant")
    record = await gw.tenants.get_tenant(tenant_id)
    if record is None:
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return record


TenantDep = Annotated[TenantRecord, Depends(tenant_record)]


async def tenant_in_path(tenant_id: str, who: CallerDep, gw: GatewayDep) -> str:
    """As :func:`tenant_record`, for routes that need only the id (no copy of its record)."""
    tenant_id = validate_tenant_id(tenant_id)
    if not who.may_use(tenant_id):
        raise Forbidden("this token does not grant access to that tenant")
    if not gw.tenants.has(tenant_id):
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return tenant_id


TenantIdDep = Annotated[str, Depends(tenant_in_path)]
