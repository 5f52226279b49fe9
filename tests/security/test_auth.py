"""Who may call what: the auth matrix over every route of the app.

Every route must be classified here (open, admin, tenant); a route added without a
classification fails ``test_every_route_is_classified``, so none escapes the matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.helpers import LiveServer, make_settings
from tests.security.common import ADMIN_KEY, PHONE, admin, assert_error, bearer

OPEN, ADMIN, TENANT = "open", "admin", "tenant"
#: No API key either way: Meta's own mechanisms (verify token, X-Hub-Signature-256)
#: decide, and an API key or token changes nothing.
META = "meta"
Route = tuple[str, str]

ACCESS: dict[Route, str] = {
    ("GET", "/health"): OPEN,
    # the dashboard's page shell and its script: the script asks for the key on a 401
    ("GET", "/"): OPEN,
    ("*", "/static"): OPEN,
    ("*", "/docs/assets"): OPEN,  # Swagger UI's script and stylesheet
    ("GET", "/cloud/webhook"): META,
    ("POST", "/cloud/webhook"): META,
    # the server and every tenant at once
    ("GET", "/tenants"): ADMIN,
    ("POST", "/tenants"): ADMIN,
    ("DELETE", "/tenants/{tenant_id}"): ADMIN,
    ("POST", "/tenants/{tenant_id}/token"): ADMIN,
    ("POST", "/clear-all"): ADMIN,
    ("GET", "/status"): ADMIN,
    ("GET", "/metrics"): ADMIN,
    ("POST", "/webhook"): ADMIN,
    ("GET", "/deliveries"): ADMIN,
    ("POST", "/deliveries/retry-dead"): ADMIN,
    ("POST", "/deliveries/{delivery_id}/retry"): ADMIN,
    ("POST", "/deliveries/discard-dead"): ADMIN,
    ("POST", "/deliveries/{delivery_id}/discard"): ADMIN,
    ("GET", "/deliveries/health"): ADMIN,
    ("GET", "/inbound/dead"): ADMIN,
    ("POST", "/inbound/dead/{dead_id}/replay"): ADMIN,
    ("GET", "/events"): ADMIN,
    ("GET", "/openapi.json"): ADMIN,
    ("GET", "/docs"): ADMIN,
    ("POST", "/sandbox/scan"): ADMIN,
    ("POST", "/sandbox/pair"): ADMIN,
    ("POST", "/sandbox/messages"): ADMIN,
    ("POST", "/sandbox/votes"): ADMIN,
    ("GET", "/sandbox/phones/{phone}/messages"): ADMIN,
    ("POST", "/sandbox/phones"): ADMIN,
    ("POST", "/sandbox/phones/{phone}/read"): ADMIN,
    ("POST", "/sandbox/tenants/{tenant_id}/fault"): ADMIN,
    ("POST", "/sandbox/reset"): ADMIN,
    # one tenant: its own token is enough
    ("GET", "/tenants/{tenant_id}/status"): TENANT,
    ("GET", "/tenants/{tenant_id}/qr"): TENANT,
    ("POST", "/tenants/{tenant_id}/pair-code"): TENANT,
    ("POST", "/tenants/{tenant_id}/start"): TENANT,
    ("POST", "/tenants/{tenant_id}/stop"): TENANT,
    ("POST", "/tenants/{tenant_id}/restart"): TENANT,
    ("POST", "/restart/{tenant_id}"): TENANT,
    ("POST", "/tenants/{tenant_id}/logout"): TENANT,
    ("POST", "/send/{tenant_id}"): TENANT,
    ("POST", "/tenants/{tenant_id}/send"): TENANT,
    ("POST", "/tenants/{tenant_id}/check"): TENANT,
    ("GET", "/tenants/{tenant_id}/messages"): TENANT,
    ("GET", "/tenants/{tenant_id}/messages/{message_id}"): TENANT,
    ("GET", "/tenants/{tenant_id}/messages/{message_id}/media"): TENANT,
    ("DELETE", "/tenants/{tenant_id}/messages/{message_id}"): TENANT,
    ("GET", "/tenants/{tenant_id}/opt-outs"): TENANT,
    ("DELETE", "/tenants/{tenant_id}/opt-outs/{phone}"): TENANT,
    ("GET", "/tenants/{tenant_id}/opt-out-keywords"): TENANT,
    ("PUT", "/tenants/{tenant_id}/opt-out-keywords"): TENANT,
    ("PUT", "/tenants/{tenant_id}/webhook"): TENANT,
    ("GET", "/tenants/{tenant_id}/webhook"): TENANT,
    ("DELETE", "/tenants/{tenant_id}/webhook"): TENANT,
    ("PUT", "/tenants/{tenant_id}/cloud"): TENANT,
    ("GET", "/tenants/{tenant_id}/events"): TENANT,
}

# The tenant each route acts on (destructive admin routes get one of their own).
TENANT_OF: dict[Route, str] = {
    ("DELETE", "/tenants/{tenant_id}"): "doomed",
    ("POST", "/tenants/{tenant_id}/token"): "rotated",
}
BODIES: dict[Route, Any] = {
    ("POST", "/tenants/{tenant_id}/pair-code"): {"phone": PHONE},
    ("POST", "/send/{tenant_id}"): {"phone": PHONE, "message": "oi"},
    ("POST", "/tenants/{tenant_id}/send"): {"phone": PHONE, "message": "oi"},
    ("POST", "/tenants/{tenant_id}/check"): {"phones": [PHONE]},
    ("PUT", "/tenants/{tenant_id}/webhook"): {"url": "http://127.0.0.1:9/h", "secret": "s3cret-42"},
    ("POST", "/webhook"): {"phone": PHONE, "message": "x", "empresa_id": "alpha"},
    ("POST", "/sandbox/scan"): {"qr": "2@nope", "phone": PHONE},
    ("POST", "/sandbox/pair"): {"code": "ABCD-EFGH", "phone": PHONE},
    ("POST", "/sandbox/messages"): {"from": PHONE, "tenant_id": "alpha", "text": "oi"},
    ("POST", "/sandbox/votes"): {
        "from": PHONE,
        "tenant_id": "alpha",
        "message_id": "3EB0NOPE",
        "options": [],
    },
    ("PUT", "/tenants/{tenant_id}/opt-out-keywords"): {"keywords": None},
    ("POST", "/sandbox/phones"): {"phone": PHONE},
    ("POST", "/sandbox/tenants/{tenant_id}/fault"): {"kind": "network_up"},
}


def app_routes(app: FastAPI) -> set[Route]:
    """(method, path) of every route the app answers, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept apart
        routes: Any = app.routes
    else:
        routes = iter_route_contexts(app.routes)
    found: set[Route] = set()
    for route in routes:
        methods = getattr(route, "methods", None) or {"*"}  # a mount answers every method
        found |= {(method, route.path) for method in methods if method != "HEAD"}
    return found


class Matrix:
    """A live server with the admin key, tenants alpha and beta and their tokens."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.created = itertools.count()

    async def setup(self) -> None:
        for tenant_id in ("alpha", "beta", "doomed", "rotated"):
            created = await self.server.http.post(
                "/tenants", json={"tenantId": tenant_id}, headers=admin()
            )
            assert created.status_code == 201, created.text
            self.tokens[tenant_id] = created.json()["token"]

    def url(self, route: Route) -> str:
        tenant = TENANT_OF.get(route, "alpha")
        if route[0] == "*":
            return route[1] + "/app.js"
        return route[1].format(
            tenant_id=tenant, message_id="3EB0NOPE", delivery_id="nope", phone=PHONE, dead_id=1
        )

    def body(self, route: Route) -> Any:
        if route == ("POST", "/tenants"):
            return {"tenantId": f"new{next(self.created)}"}
        return BODIES.get(route)

    async def call(self, route: Route, headers: dict[str, str]) -> tuple[int, Any]:
        """Status and JSON body (None for HTML, PNG, event streams) of one call."""
        method = "GET" if route[0] == "*" else route[0]
        request = self.server.http.build_request(
            method, self.url(route), json=self.body(route), headers=headers
        )
        response = await self.server.http.send(request, stream=True)
        try:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("application/json"):
                return response.status_code, None
            await response.aread()
            return response.status_code, response.json()
        finally:
            await response.aclose()


@pytest.fixture
async def matrix(tmp_path: Path) -> AsyncIterator[Matrix]:
    async with LiveServer(make_settings(tmp_path, api_key=ADMIN_KEY)) as server:
        m = Matrix(server)
        await m.setup()
        yield m


async def test_every_route_is_classified(matrix: Matrix) -> None:
    unclassified = app_routes(matrix.server.app) - set(ACCESS)
    assert not unclassified, f"classify these routes in ACCESS (open/admin/tenant): {unclassified}"


def _denied(status: int, body: Any, expected: int) -> None:
    assert status == expected, (status, body)
    assert body["success"] is False
    assert body["error"]["code"] == ("unauthorized" if expected == 401 else "forbidden")


def _allowed(route: Route, who: str, status: int, body: Any) -> None:
    assert status not in (401, 403) and status < 500, (route, who, status, body)
    if body is not None:
        assert "success" in body or route == ("GET", "/openapi.json"), (route, body)


async def test_auth_matrix_over_every_route(matrix: Matrix) -> None:
    tokens = matrix.tokens
    for route in sorted(app_routes(matrix.server.app)):
        access = ACCESS[route]
        own = tokens[TENANT_OF.get(route, "alpha")]
        callers: list[tuple[str, dict[str, str]]] = [
            ("no credential", {}),
            ("wrong key", admin("not-the-key")),
            ("wrong bearer", bearer("zt_not-a-token-at-all-000000000000")),
            ("other tenant's token", admin(tokens["beta"])),
            ("own tenant token", bearer(own)),
            ("admin key", admin()),
        ]
        for who, headers in callers:
            status, body = await matrix.call(route, headers)
            if access == META:
                assert status in (401, 403), (route, who, status, body)
                assert body["error"]["code"] in {"signature_missing", "verify_token_mismatch"}
            elif access == OPEN or who == "admin key":
                _allowed(route, who, status, body)
            elif who in {"no credential", "wrong key", "wrong bearer"}:
                _denied(status, body, 401)
            elif who == "own tenant token" and access == TENANT:
                _allowed(route, who, status, body)
            else:
                _denied(status, body, 403)


async def test_admin_key_as_bearer_and_tenant_token_as_header(matrix: Matrix) -> None:
    http = matrix.server.http
    assert (await http.get("/tenants", headers=bearer(ADMIN_KEY))).status_code == 200
    assert (
        await http.get("/tenants", headers={"authorization": f"bearer {ADMIN_KEY}"})
    ).status_code == 200
    own = await http.get("/tenants/alpha/status", headers=admin(matrix.tokens["alpha"]))
    assert own.status_code == 200 and own.json()["tenant_id"] == "alpha"
    basic = await http.get("/tenants", headers={"Authorization": f"Basic {ADMIN_KEY}"})
    assert_error(basic, 401, "unauthorized")
    prefix = await http.get("/tenants", headers=admin(ADMIN_KEY[:-1]))
    assert_error(prefix, 401, "unauthorized")


async def test_a_token_for_an_unknown_tenant_is_403_not_404(matrix: Matrix) -> None:
    """A token holder learns nothing about which other tenants exist."""
    response = await matrix.server.http.get(
        "/tenants/ghost/status", headers=bearer(matrix.tokens["alpha"])
    )
    assert_error(response, 403, "forbidden")
    as_admin = await matrix.server.http.get("/tenants/ghost/status", headers=admin())
    assert_error(as_admin, 404, "tenant_not_found")


async def test_query_api_key_only_where_a_browser_cannot_send_headers(matrix: Matrix) -> None:
    http = matrix.server.http
    alpha = matrix.tokens["alpha"]
    for path, key, expected in [
        ("/events", ADMIN_KEY, 200),
        ("/tenants/alpha/events", alpha, 200),
        ("/tenants/alpha/events", matrix.tokens["beta"], 403),
        ("/events", alpha, 403),
        ("/events", "wrong", 401),
    ]:
        async with http.stream("GET", path, params={"api_key": key}) as response:
            assert response.status_code == expected, (path, response.status_code)
    for path in ("/tenants/alpha/status", "/tenants", "/status", "/metrics"):
        response = await http.get(path, params={"api_key": ADMIN_KEY})
        assert_error(response, 401, "unauthorized")
    docs = await http.get("/docs", params={"api_key": ADMIN_KEY})
    assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text
    assert (await http.get("/openapi.json", params={"api_key": ADMIN_KEY})).status_code == 200
    assert (await http.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
    assert_error(await http.get("/docs", params={"api_key": alpha}), 403)


async def test_token_is_shown_once_and_rotation_revokes_the_old_one(matrix: Matrix) -> None:
    http = matrix.server.http
    old = matrix.tokens["alpha"]
    for path in ("/tenants", "/tenants/alpha/status", "/status"):
        listed = await http.get(path, headers=admin())
        assert listed.status_code == 200
        assert old not in listed.text and "token" not in listed.text, path

    rotated = await http.post("/tenants/alpha/token", headers=admin())
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    assert new != old and new.startswith("zt_")
    assert_error(await http.get("/tenants/alpha/status", headers=bearer(old)), 401, "unauthorized")
    fresh = await http.get("/tenants/alpha/status", headers=bearer(new))
    assert fresh.status_code == 200
    # a tenant cannot rotate (and so take over) its own token
    assert_error(await http.post("/tenants/alpha/token", headers=bearer(new)), 403, "forbidden")


async def test_without_an_admin_key_loopback_answers_everything(tmp_path: Path) -> None:
    async with LiveServer(make_settings(tmp_path)) as server:
        assert (await server.http.get("/tenants")).status_code == 200
        assert (await server.http.get("/openapi.json")).status_code == 200


def test_each_classified_route_has_an_access_level() -> None:
    assert set(ACCESS.values()) <= {OPEN, ADMIN, TENANT, META}
    assert all(method in {"GET", "POST", "PUT", "DELETE", "PATCH", "*"} for method, _ in ACCESS)


async def test_docs_need_the_admin_key(matrix: Matrix) -> None:
    http = matrix.server.http
    assert_error(await http.get("/docs"), 401)
    assert_error(await http.get("/openapi.json", headers=bearer(matrix.tokens["alpha"])), 403)
    docs = await http.get("/docs", headers=admin())
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = await http.get("/openapi.json", headers=admin())
    assert spec.status_code == 200 and "/tenants" in spec.json()["paths"]
