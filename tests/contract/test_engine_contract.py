"""The engine seam's contract, run against every engine that can run here.

Only what holds offline is asserted: no phone scans a QR and WhatsApp is unreachable,
so "connect" ends in a QR code, or in a transient disconnect naming the dial error.
The cloud engine talks to a fake Graph API (tests/fake_graph.py) that knows the
credentials stored for the tenants below, so its "connect" ends in ``Connected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_graph import FakeGraph
from zapmux import events as ev
from zapmux.config import Settings
from zapmux.engines import create_engine
from zapmux.engines.base import Engine, NotConnected, OutgoingMessage
from zapmux.store import open_store
from zapmux.store.base import Store
from zapmux.store.records import CloudAccount

#: Every engine this contract runs against.
ENGINES = ["sandbox", "whatsmeow", "cloud"]
#: The tenants these tests use; the cloud engine has credentials stored for each.
TENANTS = ("tenant-1", "idle", "unpaired", "quiet", "again", "leaving")

FIRST_EVENT_WITHIN_S = 20.0


def closed_port_proxy() -> str:
    """A proxy nobody listens on: the whatsmeow dial fails at once, network or not."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _cloud_credentials(graph: FakeGraph, store: Store) -> None:
    for n, tenant_id in enumerate(TENANTS):
        number, token = f"10654035224{n:04d}", f"EAAGtoken{n}"
        graph.register(number, token)
        await store.cloud_save(CloudAccount(tenant_id, number, token, "app-secret", "verify"))


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    async with contextlib.AsyncExitStack() as stack:
        graph = await stack.enter_async_context(FakeGraph())
        settings = Settings(
            auth_dir=tmp_path / "auth",
            data_dir=tmp_path / "data",
            cloud_api_url=graph.url,
            _env_file=None,
        )
        store = open_store("memory://")  # the store's own contract is tested apart
        await store.migrate()
        stack.push_async_callback(store.close)
        built = create_engine(request.param, settings, store)
        if request.param == "whatsmeow":
            from zapmux.engines.whatsmeow.client import WhatsmeowEngine, WorkerOptions

            assert isinstance(built, WhatsmeowEngine)
            built.options = WorkerOptions(proxy=closed_port_proxy())
        if request.param == "cloud":
            await _cloud_credentials(graph, store)
        await built.start()
        stack.push_async_callback(built.aclose)
        yield built


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[ev.Event] = asyncio.Queue()

    async def __call__(self, event: ev.Event) -> None:
        await self.queue.put(event)


async def test_open_session_names_its_tenant(engine: Engine) -> None:
    session = engine.open_session("tenant-1", Inbox())
    assert session.tenant_id == "tenant-1"


async def test_a_fresh_tenant_is_not_paired(engine: Engine) -> None:
    assert await engine.is_paired("never-seen") is False


async def test_wipe_of_an_unknown_tenant_is_harmless(engine: Engine) -> None:
    await engine.wipe("never-seen")
    assert await engine.is_paired("never-seen") is False


async def test_commands_without_a_connection_raise_not_connected(engine: Engine) -> None:
    session = engine.open_session("idle", Inbox())
    with pytest.raises(NotConnected):
        await session.send(OutgoingMessage(to="5511988887777@s.whatsapp.net", text="oi"))
    with pytest.raises(NotConnected):
        await session.check(["5511988887777"])
    with pytest.raises(NotConnected):
        await session.mark_read(
            "5511988887777@s.whatsapp.net", "5511988887777@s.whatsapp.net", ["X"]
        )


async def test_connect_reports_how_it_went(engine: Engine) -> None:
    inbox = Inbox()
    session = engine.open_session("unpaired", inbox)
    await session.connect()
    event = await asyncio.wait_for(inbox.queue.get(), FIRST_EVENT_WITHIN_S)
    assert isinstance(event, ev.QrCode | ev.Disconnected | ev.Connected)
    if isinstance(event, ev.QrCode):
        assert event.code and event.index == 1 and event.total == 6
    elif isinstance(event, ev.Connected):
        assert not engine.pairs  # only an engine without pairing connects unpaired here
        assert event.phone and event.jid
    else:
        assert event.reason
    await session.disconnect()


async def test_disconnect_is_quiet_and_idempotent(engine: Engine) -> None:
    inbox = Inbox()
    session = engine.open_session("quiet", inbox)
    await session.connect()
    await asyncio.wait_for(inbox.queue.get(), FIRST_EVENT_WITHIN_S)
    await session.disconnect()
    await session.disconnect()
    await asyncio.sleep(0.3)
    assert inbox.queue.empty()
    with pytest.raises(NotConnected):
        await session.send(OutgoingMessage(to="5511988887777@s.whatsapp.net", text="oi"))


async def test_a_session_can_connect_again(engine: Engine) -> None:
    inbox = Inbox()
    session = engine.open_session("again", inbox)
    for _ in range(2):
        await session.connect()
        await asyncio.wait_for(inbox.queue.get(), FIRST_EVENT_WITHIN_S)
        await session.disconnect()


async def test_logout_of_a_session_that_is_not_running_is_quiet(engine: Engine) -> None:
    inbox = Inbox()
    session = engine.open_session("leaving", inbox)
    await session.logout()  # never connected
    await session.connect()
    await asyncio.wait_for(inbox.queue.get(), FIRST_EVENT_WITHIN_S)
    await session.disconnect()
    await asyncio.wait_for(engine.open_session("leaving", inbox).logout(), 40)
    assert await engine.is_paired("leaving") is False
    await asyncio.sleep(0.3)
    assert inbox.queue.empty()
