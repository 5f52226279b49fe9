"""One worker process per running tenant: it dials again in the same process after a
disconnect, following the supervisor's backoff; a new process only after a crash, a
hang, ``max_dials`` dials, or when it outgrew the memory ceiling.

WhatsApp is unreachable here: a refused proxy makes every dial fail at once (a tenant
that is offline), a silent one keeps a worker dialing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import make_settings
from zapmux import events as ev
from zapmux.config import Settings
from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.engines.whatsmeow.procinfo import pid_alive, wait_gone
from zapmux.states import Status
from zapmux.store import open_store
from zapmux.store.records import TenantRecord
from zapmux.supervisor import Supervisor, TenantRunner
from zapmux.tasks import TaskGroup

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import PairStore, StartedWorkers


class Inbox:
    """A sink that keeps what it was given and hands it out in order."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[ev.Event] = asyncio.Queue()

    async def __call__(self, event: ev.Event) -> None:
        await self.events.put(event)

    async def next(self, within: float = 20.0) -> ev.Event:
        return await asyncio.wait_for(self.events.get(), within)


def workers_for_dials(caplog: pytest.LogCaptureFixture, tenant: str, dials: int) -> list[int]:
    """The workers started for the tenant's first ``dials`` failed dials (from its log)."""
    workers, failed = [], 0
    for record in list(caplog.records):
        if record.name != f"zapmux.tenant.{tenant}":
            continue
        text = record.getMessage()
        if match := re.fullmatch(r"started whatsmeow worker pid (\d+)", text):
            workers.append(int(match.group(1)))
        elif text.startswith("🔄 disconnected"):
            failed += 1
            if failed == dials:
                return workers
    raise AssertionError(f"{tenant} failed {failed} dials, not {dials}")


async def until(condition: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - plain attributes, nothing to await
            await asyncio.sleep(0.02)
    assert condition(), what


async def dial_and_fail(session: object, inbox: Inbox) -> ev.Event:
    await session.connect()  # type: ignore[attr-defined]
    return await inbox.next()


async def test_a_worker_dials_again_in_its_own_process_up_to_max_dials(
    settings: Settings, refused_proxy: str
) -> None:
    engine = WhatsmeowEngine(settings, proxy=refused_proxy, max_dials=3)
    inbox = Inbox()
    session = engine.open_session("redial", inbox)
    pids = []
    try:
        for _ in range(4):
            event = await dial_and_fail(session, inbox)
            assert isinstance(event, ev.Disconnected) and "dial" in str(event.detail)
            assert await session.pause()  # what the supervisor does before its backoff
            pids.append(session.worker_pid)
        assert pids[0] and pids[0] == pids[1] == pids[2] != pids[3]
        assert await wait_gone(pids[0]) and pid_alive(pids[3])  # the old one was stopped
    finally:
        await engine.aclose()
    assert await wait_gone(pids[3])


RunPaired = Callable[..., Awaitable[list[TenantRunner]]]


@pytest.fixture
async def run_paired_offline(
    tmp_path: Path, refused_proxy: str, paired_store: PairStore, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[RunPaired]:
    """Start paired tenants under a real supervisor whose every dial is refused."""
    made: list[Supervisor] = []

    async def run(tenants: tuple[str, ...], **settings: Any) -> list[TenantRunner]:
        config = make_settings(tmp_path, engine="whatsmeow", **settings)
        store = open_store(config.store_url)
        await store.migrate()
        engine = WhatsmeowEngine(config, proxy=refused_proxy)
        supervisor = Supervisor(config, store, engine, TaskGroup())
        made.append(supervisor)
        for tenant in tenants:
            await paired_store(engine, tenant)
        caplog.clear()
        return [await supervisor.resume(await store.create_tenant(TenantRecord(id=t)))
                for t in tenants]  # fmt: skip

    yield run
    for supervisor in made:
        await supervisor.stop_all()
        await supervisor.tasks.cancel_all()
        await supervisor.engines.aclose()
        await supervisor.store.close()


async def test_offline_tenants_keep_one_worker_through_the_supervisors_backoff(
    run_paired_offline: RunPaired,
    caplog: pytest.LogCaptureFixture,
    started_workers: StartedWorkers,
) -> None:
    # Ten retries: more than a minute offline with the default backoff (1 s base, 60 s
    # cap: about seven retries), here in a second or two (50 ms base, 200 ms cap).
    tenants = ("clinica", "salao")
    runners = await run_paired_offline(tenants)
    await until(lambda: all(r.attempts >= 10 for r in runners), "ten retries each")
    await runners[0].sup.stop_all()
    for tenant in tenants:
        assert 1 <= len(workers_for_dials(caplog, tenant, 10)) <= 2, tenant
    started = [pid for t in tenants for pid in started_workers(t)]
    assert all(await asyncio.gather(*(wait_gone(p) for p in started)))


async def test_a_worker_that_dies_between_dials_is_replaced_without_a_word(
    settings: Settings, refused_proxy: str
) -> None:
    engine = WhatsmeowEngine(settings, proxy=refused_proxy)
    inbox = Inbox()
    session = engine.open_session("crash", inbox)
    try:
        await dial_and_fail(session, inbox)
        await session.pause()
        parked = session.worker_pid
        assert parked
        os.kill(parked, signal.SIGKILL)
        assert await wait_gone(parked)
        await asyncio.sleep(0.3)
        assert inbox.events.empty()  # nothing was dialing: nothing to report
        event = await dial_and_fail(session, inbox)
        assert isinstance(event, ev.Disconnected) and "dial" in str(event.detail)
        assert session.last_worker_pid not in (None, parked)
    finally:
        await engine.aclose()


async def test_a_hung_worker_is_killed_and_reported(
    settings: Settings, blackhole_proxy: str
) -> None:
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy, heartbeat_s=0.2, hang_timeout_s=1.5)
    inbox = Inbox()
    session = engine.open_session("frozen", inbox)
    try:
        await session.connect()  # dialing into a proxy that never answers
        pid = session.worker_pid
        assert pid
        os.kill(pid, signal.SIGSTOP)  # its event loop stops: no more heartbeats
        event = await inbox.next(within=15)
        assert event == ev.Disconnected(reason="worker hung: no heartbeat for 1.5 s")
        assert await wait_gone(pid)
    finally:
        await engine.aclose()


async def test_a_worker_over_the_memory_ceiling_is_replaced_at_its_next_dial(
    settings: Settings, refused_proxy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="zapmux.tenant")
    engine = WhatsmeowEngine(settings, proxy=refused_proxy, max_rss_mb=1, heartbeat_s=0.1)
    inbox = Inbox()
    session = engine.open_session("big", inbox)
    try:
        await dial_and_fail(session, inbox)
        await session.pause()
        first = session.worker_pid
        await asyncio.sleep(0.5)  # a heartbeat reports its size (far above 1 MB)
        await dial_and_fail(session, inbox)
        assert session.last_worker_pid not in (None, first)
        assert await wait_gone(first)  # type: ignore[arg-type]
    finally:
        await engine.aclose()
    assert any(
        "replacing whatsmeow worker" in r.getMessage() and "ceiling 1 MB" in r.getMessage()
        for r in caplog.records
    )


async def test_stopping_a_reconnecting_tenant_ends_its_idle_worker(
    run_paired_offline: RunPaired, started_workers: StartedWorkers
) -> None:
    [runner] = await run_paired_offline(("loja",), reconnect_base_s=30.0, reconnect_cap_s=30.0)
    await until(lambda: runner.status == Status.RECONNECTING, "a failed dial")
    [pid] = started_workers("loja")
    assert pid_alive(pid)  # waiting for its next dial, in the same process
    await runner.stop()
    assert await wait_gone(pid)


async def test_logout_while_waiting_to_redial_uses_the_idle_worker(
    settings: Settings,
    refused_proxy: str,
    paired_store: PairStore,
    caplog: pytest.LogCaptureFixture,
    started_workers: StartedWorkers,
) -> None:
    caplog.set_level("DEBUG", logger="zapmux.tenant")
    engine = WhatsmeowEngine(settings, proxy=refused_proxy)
    inbox = Inbox()
    try:
        await paired_store(engine, "sair")
        caplog.clear()
        session = engine.open_session("sair", inbox)
        await dial_and_fail(session, inbox)
        assert await session.pause()
        [idle] = started_workers("sair")
        await asyncio.wait_for(session.logout(), 30)
        assert started_workers("sair") == [idle]  # no second process to log out
        assert not await engine.is_paired("sair") and await wait_gone(idle)
        assert inbox.events.empty()  # the logout's own dial reports to nobody
    finally:
        await engine.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("could not unlink the device" in w and "dial" in w for w in warnings)
