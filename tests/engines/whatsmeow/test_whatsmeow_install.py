"""Where neonize cannot be loaded (not installed, no libmagic, a glibc too old), the
server says so in one line at start, and a tenant whose worker cannot load it ends
``failed`` with that reason instead of retrying for ever.

A package named ``neonize`` that fails on import, first on ``PYTHONPATH``, stands in
for the machine that cannot load the real one; everything else is real processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.helpers import free_port, make_settings
from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.states import Status
from zapmux.store import open_store
from zapmux.store.records import TenantRecord
from zapmux.supervisor import Supervisor
from zapmux.tasks import TaskGroup

CAUSE = "failed to find libmagic.  Check your installation"


def broken_neonize(tmp_path: Path) -> str:
    """A directory whose ``neonize`` fails to import like one without libmagic."""
    package = tmp_path / "shadow" / "neonize"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ImportError({CAUSE!r})\n")
    return str(package.parent)


async def test_serve_says_in_one_line_that_neonize_cannot_load_and_exits(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": broken_neonize(tmp_path),
        "ZAPMUX_DATA_DIR": str(tmp_path / "data"),
        "ZAPMUX_AUTH_DIR": str(tmp_path / "auth"),
    }
    env.pop("ZAPMUX_ENGINE", None)  # the default engine: whatsmeow
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zapmux", "serve", "--port", str(free_port()),
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(server.communicate(), 90)
    assert server.returncode == 1
    [line] = [line for line in err.decode().splitlines() if line.strip()]
    assert line.startswith("❌ zapmux: the whatsmeow engine cannot load neonize")
    assert CAUSE in line and "--engine sandbox" in line
    assert out == b""


async def test_a_tenant_whose_worker_cannot_load_neonize_fails_with_the_reason(
    tmp_path: Path, refused_proxy: str
) -> None:
    settings = make_settings(tmp_path, engine="whatsmeow")
    store = open_store(settings.store_url)
    await store.migrate()
    shadow = {"PYTHONPATH": broken_neonize(tmp_path)}
    engine = WhatsmeowEngine(settings, proxy=refused_proxy, extra_env=shadow)
    tasks = TaskGroup()
    supervisor = Supervisor(settings, store, engine, tasks)
    try:
        runner = await supervisor.add(await store.create_tenant(TenantRecord(id="semlib")))
        await asyncio.wait_for(runner.start(), 60)
        async with asyncio.timeout(30):
            while runner.status != Status.FAILED:  # noqa: ASYNC110 - a plain attribute
                await asyncio.sleep(0.05)
        assert runner.last_error and "cannot load neonize" in runner.last_error
        assert CAUSE in runner.last_error
        await asyncio.sleep(0.5)  # a reconnect would be under way by now (50 ms backoff)
        assert runner.status == Status.FAILED and runner.attempts == 0
        assert runner.session is None and runner.next_retry_at is None
    finally:
        await supervisor.stop_all()
        await tasks.cancel_all()
        await engine.aclose()
        await store.close()
