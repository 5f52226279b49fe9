"""The loopback rule: no admin key, no listening beyond this machine."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.process import ServerProcess, serve_once
from tests.security.common import ADMIN_KEY, admin


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
    result = serve_once(tmp_path, "--port", str(free_port()), *args, **env)
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


def _one_refusal(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """A refused start: a non-zero exit, one ❌ line saying what to do, nothing else."""
    assert result.returncode != 0, result
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("❌"), lines
    assert all(word in lines[0] for word in words), lines[0]
    assert "listening" not in lines[0] and "started" not in lines[0]
    return lines[0]


def test_a_busy_port_is_one_error_line_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_once(tmp_path, "--port", str(port))
    _one_refusal(result, f"port {port}", "in use", "--port")
    assert "Errno" not in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_engine_is_one_error_line(tmp_path: Path) -> None:
    result = serve_once(tmp_path / "x", engine="foo")
    _one_refusal(result, "engine", "'foo'", "whatsmeow", "ZAPMUX_ENGINE")
    assert "pydantic" not in result.stderr and "validation error" not in result.stderr
