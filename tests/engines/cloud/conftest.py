"""A zapmux server (default engine: sandbox) beside a fake Graph API, and a cloud
tenant's credentials at both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_graph import FakeGraph, signed
from tests.helpers import LiveServer, Receiver, make_settings
from tests.sending.test_media import files  # noqa: F401 - a file server for media by URL

NUMBER_ID = "106540352242922"
TOKEN = "EAAGm0PX4ZCpsBAKEYsecretpermanenttoken0123456789"
APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VERIFY = "agenda-verify-7731"
CUSTOMER = "5511977776666"


def credentials(number: str = NUMBER_ID, token: str = TOKEN) -> dict[str, str]:
    return {
        "phone_number_id": number,
        "access_token": token,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY,
    }


@dataclass
class Cloud:
    """The server, the fake Meta, and the Flask receiver."""

    server: LiveServer
    graph: FakeGraph
    receiver: Receiver

    @property
    def http(self) -> httpx.AsyncClient:
        return self.server.http

    async def create(self, tenant_id: str = "7", **cloud: str) -> httpx.Response:
        body = {"tenantId": tenant_id, "engine": "cloud", "cloud": {**credentials(), **cloud}}
        return await self.http.post("/tenants", json=body)

    async def webhook(self, body: dict[str, Any], secret: str = APP_SECRET) -> httpx.Response:
        """Post to /cloud/webhook as Meta would, signed with ``secret``."""
        raw, headers = signed(body, secret)
        return await self.http.post("/cloud/webhook", content=raw, headers=headers)


@pytest.fixture
async def cloud(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Cloud]:
    async with FakeGraph() as graph:
        graph.register(NUMBER_ID, TOKEN)
        settings = make_settings(tmp_path, flask_url=receiver.url, cloud_api_url=graph.url)
        async with LiveServer(settings) as server:
            yield Cloud(server, graph, receiver)
