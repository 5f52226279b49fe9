"""How the CLI finds the server: --url/--api-key, else ZAPMUX_URL, else
ZAPMUX_HOST/ZAPMUX_PORT/PORT from the environment or .env, as the server finds its port."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner, Result

from tests.cli.terminal import API_KEY
from zapmux.cli import app

if TYPE_CHECKING:
    from tests.cli.terminal import CliServer

#: Nothing from the test's environment says where the server is.
UNSET = {
    name: None for name in ("ZAPMUX_URL", "ZAPMUX_HOST", "ZAPMUX_PORT", "PORT", "ZAPMUX_API_KEY")
}


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**UNSET, **env})


def _port(server: CliServer) -> str:
    return server.url.rsplit(":", 1)[1]


def test_url_and_api_key_options_need_no_environment(server: CliServer) -> None:
    result = run("tenants", "list", "--url", server.url, "--api-key", API_KEY)
    assert result.exit_code == 0, result.output


def test_a_url_without_a_scheme_works(server: CliServer) -> None:
    result = run("tenants", "list", "--url", f"localhost:{_port(server)}", "--api-key", API_KEY)
    assert result.exit_code == 0, result.output
    result = run("tenants", "list", ZAPMUX_URL=f"127.0.0.1:{_port(server)}", ZAPMUX_API_KEY=API_KEY)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["ZAPMUX_PORT", "PORT"])
def test_the_port_the_server_reads_from_dotenv_is_where_the_cli_looks(
    server: CliServer, tmp_path: Path, name: str
) -> None:
    (tmp_path / ".env").write_text(f"{name}={_port(server)}\nZAPMUX_API_KEY={API_KEY}\n")
    result = run("tenants", "list")  # the working directory is tmp_path
    assert result.exit_code == 0, result.output


def test_zapmux_host_and_port_from_the_environment(server: CliServer) -> None:
    result = run(
        "tenants", "list", ZAPMUX_HOST="0.0.0.0", ZAPMUX_PORT=_port(server), ZAPMUX_API_KEY=API_KEY
    )
    assert result.exit_code == 0, result.output  # bound everywhere: reached on 127.0.0.1


def test_the_url_option_wins_over_the_environment(server: CliServer) -> None:
    result = run(
        "tenants",
        "list",
        "--url",
        server.url,
        ZAPMUX_URL="http://127.0.0.1:9",
        ZAPMUX_API_KEY=API_KEY,
    )
    assert result.exit_code == 0, result.output


def test_a_401_says_how_to_give_the_key(server: CliServer) -> None:
    result = run("tenants", "list", "--url", server.url)
    assert result.exit_code == 1
    assert "HTTP 401" in result.stderr
    assert "set ZAPMUX_API_KEY or pass --api-key" in result.stderr


def test_help_shows_no_type_noise_beside_flags() -> None:
    for args in (["tenants", "list"], ["reset"], ["deliveries", "discard"], ["qr"]):
        result = run(*args, "--help")
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, result.output
        assert "--url" in result.output and "--api-key" in result.output
