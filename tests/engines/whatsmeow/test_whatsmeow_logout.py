"""Logging out a tenant whose worker is not running: a worker is started on the stored
session only to unlink the device; offline, the store is wiped anyway with a warning.

WhatsApp is unreachable here: a refused proxy makes the dial fail at once, a silent one
makes it hang until the logout's time bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest

from zapmux import events as ev
from zapmux.config import Settings
from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.engines.whatsmeow.procinfo import wait_gone
from zapmux.states import Status
from zapmux.store import open_store
from zapmux.store.records import TenantRecord
from zapmux.supervisor import Supervisor
from zapmux.tasks import TaskGroup

if TYPE_CHECKING:
    from conftest import PairStore, StartedWorkers


class Sink:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    async def __call__(self, event: ev.Event) -> None:
        self.events.append(event)


def warnings_of(caplog: pytest.LogCaptureFixture, tenant: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == f"zapmux.tenant.{tenant}" and r.levelno == logging.WARNING
    ]


async def test_offline_logout_of_a_stopped_tenant_tries_whatsapp_then_wipes(
    any_store_settings: Settings,
    refused_proxy: str,
    paired_store: PairStore,
    caplog: pytest.LogCaptureFixture,
    started_workers: StartedWorkers,
) -> None:
    engine = WhatsmeowEngine(any_store_settings, proxy=refused_proxy)
    await paired_store(engine, "clinic")
    assert await engine.is_paired("clinic")
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="zapmux.tenant.clinic")
    sink = Sink()
    try:
        await asyncio.wait_for(engine.open_session("clinic", sink).logout(), 30)
        assert not await engine.is_paired("clinic")
    finally:
        await engine.aclose()
    [pid] = started_workers("clinic")
    assert await wait_gone(pid)
    [warning] = warnings_of(caplog, "clinic")
    assert "could not unlink the device" in warning
    assert "failed to dial whatsapp web websocket" in warning  # the worker did try
    assert "may still list it" in warning
    assert sink.events == []  # a logout reports nothing to the supervisor


async def test_logout_gives_up_after_its_time_bound(
    settings: Settings,
    refused_proxy: str,
    blackhole_proxy: str,
    paired_store: PairStore,
    caplog: pytest.LogCaptureFixture,
    started_workers: StartedWorkers,
) -> None:
    await paired_store(WhatsmeowEngine(settings, proxy=refused_proxy), "slow")
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy, logout_timeout_s=1.5)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="zapmux.tenant.slow")
    started = time.monotonic()
    try:
        await asyncio.wait_for(engine.open_session("slow", Sink()).logout(), 30)
        elapsed = time.monotonic() - started
        assert not await engine.is_paired("slow")
    finally:
        await engine.aclose()
    assert 1.5 <= elapsed < 10
    [pid] = started_workers("slow")
    assert await wait_gone(pid)
    [warning] = warnings_of(caplog, "slow")
    assert "WhatsApp did not answer within 1.5 s" in warning


async def test_logout_of_an_unpaired_tenant_starts_no_worker(
    any_store_settings: Settings,
    refused_proxy: str,
    caplog: pytest.LogCaptureFixture,
    started_workers: StartedWorkers,
) -> None:
    engine = WhatsmeowEngine(any_store_settings, proxy=refused_proxy)
    caplog.set_level(logging.DEBUG, logger="zapmux.tenant.fresh")
    try:
        await engine.open_session("fresh", Sink()).logout()
        assert not await engine.is_paired("fresh")
    finally:
        await engine.aclose()
    assert started_workers("fresh") == [] and warnings_of(caplog, "fresh") == []


async def test_logout_through_a_worker_that_is_not_connected_still_wipes(
    settings: Settings,
    refused_proxy: str,
    blackhole_proxy: str,
    paired_store: PairStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await paired_store(WhatsmeowEngine(settings, proxy=refused_proxy), "dialing")
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy)
    session = engine.open_session("dialing", Sink())
    try:
        await session.connect()  # held mid-dial by the silent proxy
        pid = session.worker_pid
        assert pid
        await asyncio.wait_for(session.logout(), 30)
        assert not await engine.is_paired("dialing") and session.worker_pid is None
    finally:
        await engine.aclose()
    assert await wait_gone(pid)
    [warning] = warnings_of(caplog, "dialing")
    assert "WhatsApp session is starting" in warning


async def test_the_supervisor_logs_a_stopped_tenant_out_through_the_engine(
    settings: Settings,
    refused_proxy: str,
    paired_store: PairStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(settings.store_url)
    await store.migrate()
    engine = WhatsmeowEngine(settings, proxy=refused_proxy)
    supervisor = Supervisor(settings, store, engine, TaskGroup())
    try:
        await paired_store(engine, "stopped")
        record = await store.create_tenant(TenantRecord(id="stopped", wanted="stopped"))
        runner = await supervisor.add(record)
        assert runner.session is None  # never started
        await asyncio.wait_for(runner.logout(), 30)
        assert runner.status == Status.LOGGED_OUT
        assert not await engine.is_paired("stopped")
    finally:
        await engine.aclose()
        await store.close()
    [warning] = warnings_of(caplog, "stopped")
    assert "failed to dial whatsapp web websocket" in warning
