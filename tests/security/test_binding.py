"""The loopback rule: no admin key, no listening beyond this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.security.common import ADMIN_KEY, admin
from tests.security.proc import ServerProcess, server_env


def serve(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "zapmux", "serve", "--engine", "sandbox", *args],
        cwd=root,
        env=server_env(root, **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        (["--host", "::"], {}),
        (["--host", "192.0.2.10"], {}),
        (["--host", "example.com"], {}),
        ([], {"ZAPMUX_HOST": "0.0.0.0"}),
        (["--host", "0.0.0.0"], {"ZAPMUX_API_KEY": ""}),
    ],
)
def test_no_admin_key_refuses_a_public_address(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = serve(tmp_path, "--port", str(free_port()), *args, **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ZAPMUX_API_KEY" in lines[0] and "refusing" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "data").exists()  # refused before anything was touched


def test_with_an_admin_key_it_serves_on_every_address(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, host="0.0.0.0", ZAPMUX_API_KEY=ADMIN_KEY) as server:
        health = httpx.get(f"{server.url}/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert httpx.get(f"{server.url}/tenants", timeout=5).status_code == 401
        listed = httpx.get(f"{server.url}/tenants", headers=admin(), timeout=5)
        assert listed.status_code == 200 and listed.json()["tenants"] == []
    assert server.proc is not None and server.proc.returncode is not None


def test_without_a_key_loopback_is_served(tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        assert httpx.get(f"{server.url}/tenants", timeout=5).status_code == 200
