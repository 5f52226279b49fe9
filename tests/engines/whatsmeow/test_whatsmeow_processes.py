"""Real worker processes: one per tenant, crashes contained, nothing left behind.

WhatsApp is unreachable here, so the dial either fails (a refused proxy, or no
network) or hangs (a proxy that never answers), which keeps a worker alive.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zapmux import events as ev
from zapmux.config import Settings
from zapmux.engines.whatsmeow.client import WhatsmeowEngine, WhatsmeowSession
from zapmux.engines.whatsmeow.procinfo import memory_kb, pid_alive, wait_gone


class Inbox:
    """A sink that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self._arrived = asyncio.Event()
        self._read = 0

    async def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def next(self, within: float = 20.0) -> ev.Event:
        """The next event not yet looked at, waiting for it if need be."""
        while len(self.events) <= self._read:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), within)
        self._read += 1
        return self.events[self._read - 1]


async def open_two(engine: WhatsmeowEngine) -> tuple[list[WhatsmeowSession], list[Inbox]]:
    inboxes = [Inbox(), Inbox()]
    sessions = [engine.open_session(t, i) for t, i in zip(("acme", "7"), inboxes, strict=True)]
    await asyncio.gather(*(s.connect() for s in sessions))
    return sessions, inboxes


async def test_each_tenant_has_its_own_worker_and_store_and_reports_the_dial_error(
    settings: Settings, refused_proxy: str
) -> None:
    engine = WhatsmeowEngine(settings, proxy=refused_proxy)
    sessions, inboxes = await open_two(engine)
    pids = [s.last_worker_pid for s in sessions]
    events = [await inbox.next() for inbox in inboxes]
    await engine.aclose()
    assert None not in pids and pids[0] != pids[1]
    for event in events:
        assert isinstance(event, ev.Disconnected)
        assert "failed to dial whatsapp web websocket" in str(event.detail)
    for tenant in ("acme", "7"):
        assert (settings.auth_dir / tenant / "whatsmeow.db").is_file()
        assert not await engine.is_paired(tenant)
    assert all(await asyncio.gather(*(wait_gone(p) for p in pids if p)))


async def test_offline_without_proxy_the_dial_fails(settings: Settings) -> None:
    engine = WhatsmeowEngine(settings)
    inbox = Inbox()
    await engine.open_session("offline", inbox).connect()
    event = await inbox.next()
    await engine.aclose()
    if isinstance(event, ev.QrCode):
        pytest.skip("WhatsApp is reachable from this machine")
    assert isinstance(event, ev.Disconnected) and "dial" in str(event.detail)


async def test_sigkill_of_one_worker_touches_only_its_tenant(
    settings: Settings, blackhole_proxy: str
) -> None:
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy)
    (killed, other), (killed_inbox, other_inbox) = await open_two(engine)
    victim, survivor = killed.worker_pid, other.worker_pid
    assert victim and survivor
    os.kill(victim, signal.SIGKILL)
    event = await killed_inbox.next()
    assert event == ev.Disconnected(reason="worker exited unexpectedly: SIGKILL (signal 9)")
    await asyncio.sleep(0.5)
    assert other_inbox.events == [] and pid_alive(survivor) and other.worker_pid == survivor

    await killed.connect()  # what the supervisor's backoff does next
    replacement = killed.worker_pid
    assert replacement and replacement != victim and pid_alive(replacement)
    await engine.aclose()
    assert await wait_gone(replacement) and await wait_gone(survivor)
    assert killed_inbox.events == [event] and other_inbox.events == []  # stops are silent


async def test_disconnect_ends_the_worker_quietly(settings: Settings, blackhole_proxy: str) -> None:
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy)
    inbox = Inbox()
    session = engine.open_session("quiet", inbox)
    await session.connect()
    pid = session.worker_pid
    assert pid and pid_alive(pid)
    await asyncio.wait_for(session.disconnect(), 10)
    assert not pid_alive(pid) and session.worker_pid is None
    await engine.aclose()
    assert inbox.events == []


async def test_the_worker_exits_when_the_server_dies(tmp_path: Path, blackhole_proxy: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from types import SimpleNamespace
        from zapmux.engines.whatsmeow.client import WhatsmeowEngine

        async def main():
            engine = WhatsmeowEngine(SimpleNamespace(auth_dir={str(tmp_path)!r}), proxy={blackhole_proxy!r})
            async def sink(event): pass
            session = engine.open_session("orphan", sink)
            await session.connect()
            print(session.worker_pid, flush=True)
            await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    worker = int(await asyncio.wait_for(parent.stdout.readline(), 30))
    assert pid_alive(worker)
    parent.kill()
    await parent.wait()
    assert await wait_gone(worker, 10), "the worker outlived its server"


async def test_the_server_process_never_loads_neonize(tmp_path: Path, refused_proxy: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from zapmux.config import Settings
        from zapmux.engines import create_engine

        async def main():
            settings = Settings(auth_dir={str(tmp_path)!r}, whatsmeow_proxy={refused_proxy!r}, _env_file=None)
            engine = create_engine("whatsmeow", settings, None)
            got = []
            async def sink(event): got.append(type(event).__name__)
            for tenant in ("a", "b"):
                await engine.open_session(tenant, sink).connect()
            while len(got) < 2:
                await asyncio.sleep(0.05)
            await engine.aclose()
            maps = open("/proc/self/maps").read()
            print(json.dumps({{"events": got, "module": "neonize" in sys.modules,
                               "mapped": "neonize" in maps}}))

        asyncio.run(main())
        """
    )
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(done.communicate(), 60)
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report == {"events": ["Disconnected", "Disconnected"], "module": False, "mapped": False}


async def test_memory_of_one_worker(settings: Settings, blackhole_proxy: str) -> None:
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy)
    session = engine.open_session("mem", Inbox())
    started = asyncio.get_running_loop().time()
    await session.connect()
    startup = asyncio.get_running_loop().time() - started
    await asyncio.sleep(1.0)
    assert session.worker_pid
    memory = memory_kb(session.worker_pid)
    await engine.aclose()
    print(f"\nworker startup {startup:.2f} s, RSS {memory['Rss']} kB, PSS {memory['Pss']} kB")
    assert memory["Pss"] < 200 * 1024  # docs/whatsmeow.md: ~45-70 MB measured


async def test_a_worker_loads_no_server_settings(settings: Settings, blackhole_proxy: str) -> None:
    """A worker needs none of the server's settings, which bring pydantic: imported
    through ``zapmux.engines`` they cost every worker ~12 MB of PSS (43.7 MB against
    the 40 MB target; docs/whatsmeow.md)."""
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy)
    session = engine.open_session("lean", Inbox())
    await session.connect()
    await asyncio.sleep(1.0)  # dialing: neonize and the worker's own modules are loaded
    assert session.worker_pid
    maps = Path(f"/proc/{session.worker_pid}/maps").read_text()
    await engine.aclose()
    assert "neonize" in maps  # the worker is up (its Go library is mapped)
    assert "_pydantic_core" not in maps


def worker_environment(pid: int) -> dict[str, str]:
    """A live process's environment as Linux holds it (``/proc/<pid>/environ``)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.mark.parametrize(("setting", "expected"), [(None, "off"), ("on", "on"), ("off", "off")])
async def test_workers_start_without_neonizes_ai_label_unless_asked(
    tmp_path: Path,
    blackhole_proxy: str,
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    expected: str,
) -> None:
    monkeypatch.setenv("NEONIZE_BOT_TAG", "on")  # the server's own environment does not count
    if setting is not None:
        monkeypatch.setenv("ZAPMUX_WHATSMEOW_BOT_TAG", setting)
    settings = Settings(auth_dir=tmp_path / "auth", _env_file=None)
    engine = WhatsmeowEngine(settings, proxy=blackhole_proxy)
    session = engine.open_session("label", Inbox())
    await session.connect()
    assert session.worker_pid
    environment = worker_environment(session.worker_pid)
    await engine.aclose()
    assert environment["NEONIZE_BOT_TAG"] == expected
