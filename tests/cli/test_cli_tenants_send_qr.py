"""`zapmux tenants …`, `send` and `qr` against a live sandbox server."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from zapmux.qr import qr_text

if TYPE_CHECKING:
    from tests.cli.terminal import CliServer


def test_create_then_list_shows_the_tenant_awaiting_its_scan(server: CliServer) -> None:
    result = server.cli("tenants", "create", "cli-create")
    assert result.exit_code == 0, result.output
    assert "tenant cli-create created" in result.output
    assert "zapmux qr cli-create" in result.output

    listed = server.cli("tenants", "list")
    assert listed.exit_code == 0, listed.output
    [line] = [ln for ln in listed.output.splitlines() if "cli-create" in ln]
    assert server.status("cli-create")["status"] in line


def test_list_json_is_the_servers_list(server: CliServer) -> None:
    server.cli("tenants", "create", "cli-json")
    result = server.cli("tenants", "list", "--json")
    assert result.exit_code == 0, result.output
    tenants = json.loads(result.stdout)
    assert "cli-json" in {t["tenant_id"] for t in tenants}


def test_creating_a_tenant_twice_is_one_clear_error_line(server: CliServer) -> None:
    server.cli("tenants", "create", "cli-twice")
    result = server.cli("tenants", "create", "cli-twice")
    assert result.exit_code == 1
    assert "HTTP 409 tenant_exists" in result.stderr
    assert "Traceback" not in result.output


def _countdown_masked(output: str) -> str:
    return re.sub(r"within \d+ s", "within N s", output)


def test_qr_prints_the_current_code_in_the_terminal(server: CliServer) -> None:
    server.cli("tenants", "create", "cli-qr")
    raw = server.current_qr("cli-qr")  # the first code lives 60 s here: no rotation in between
    result = server.cli("qr", "cli-qr")
    assert result.exit_code == 0, result.output
    assert qr_text(raw) in result.stdout
    drawn_by_server = server.http.get("/tenants/cli-qr/qr", params={"format": "text"}).text
    assert drawn_by_server.strip() in result.stdout  # the same drawing as ?format=text
    assert "Link a device" in result.stdout
    again = server.cli("tenants", "qr", "cli-qr").stdout
    # the same output, but for the countdown, which may tick between the two calls
    assert _countdown_masked(again) == _countdown_masked(result.stdout)


def test_qr_watch_returns_once_the_code_is_scanned(server: CliServer) -> None:
    server.cli("tenants", "create", "cli-watch")
    watcher = server.cli_process("qr", "cli-watch", "--watch")
    try:
        assert watcher.stdout is not None
        shown = ""
        while "Link a device" not in shown:  # scan only once the watcher drew the code
            line = watcher.stdout.readline()
            assert line, f"the watcher ended early: {watcher.communicate()}"
            shown += line
        raw = server.current_qr("cli-watch")
        scan = server.http.post("/sandbox/scan", json={"qr": raw, "phone": "5511911110008"})
        assert scan.status_code == 200, scan.text
        rest, err = watcher.communicate(timeout=20)
        out = shown + rest
    finally:
        watcher.kill()
        watcher.wait()
    assert watcher.returncode == 0, err
    assert qr_text(raw) in out
    assert out.rstrip().endswith("✅ cli-watch is connected as 5511911110008")


def test_qr_of_a_paired_tenant_says_connected(server: CliServer) -> None:
    server.create_paired("cli-paired", "5511911110001")
    result = server.cli("qr", "cli-paired")
    assert result.exit_code == 0, result.output
    assert "cli-paired is connected as 5511911110001" in result.stdout
    assert "█" not in result.stdout


def test_send_reaches_the_recipients_phone(server: CliServer) -> None:
    server.create_paired("cli-send", "5511911110002")
    result = server.cli("send", "cli-send", "5511922220002", "Seu horário é às 10h")
    assert result.exit_code == 0, result.output
    assert "sent" in result.stdout
    inbox = server.http.get("/sandbox/phones/5511922220002/messages").json()["messages"]
    assert [m["text"] for m in inbox if m["tenant_id"] == "cli-send"] == ["Seu horário é às 10h"]


def test_send_from_a_never_paired_tenant_is_refused(server: CliServer) -> None:
    server.cli("tenants", "create", "cli-unpaired")
    result = server.cli("send", "cli-unpaired", "5511922220003", "oi")
    assert result.exit_code == 1
    assert "409 tenant_not_connected" in result.stderr


def test_send_to_a_malformed_phone_is_a_400(server: CliServer) -> None:
    server.create_paired("cli-badphone", "5511911110004")
    result = server.cli("send", "cli-badphone", "12ab", "oi")
    assert result.exit_code == 1
    assert "HTTP 400" in result.stderr


def test_restart_waits_and_reports_the_tenant_connected_again(server: CliServer) -> None:
    server.create_paired("cli-restart", "5511911110005")
    since = server.status("cli-restart")["since"]
    result = server.cli("tenants", "restart", "cli-restart")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "🔄 tenant cli-restart restarted"
    assert result.stdout.splitlines()[1].split()[:3] == ["✅", "cli-restart", "connected"]
    assert server.status("cli-restart")["since"] != since  # it did reconnect


def test_stop_then_start(server: CliServer) -> None:
    server.create_paired("cli-stop", "5511911110006")
    stopped = server.cli("tenants", "stop", "cli-stop")
    assert stopped.exit_code == 0, stopped.output
    assert "cli-stop" in stopped.stdout and "stopped" in stopped.stdout.splitlines()[1]
    assert "`zapmux tenants start cli-stop`" in stopped.stdout
    assert server.status("cli-stop")["status"] == "stopped"
    started = server.cli("tenants", "start", "cli-stop")
    assert started.exit_code == 0, started.output
    assert started.stdout.splitlines()[1].split()[:3] == ["✅", "cli-stop", "connected"]


def test_restart_of_a_tenant_that_cannot_connect_says_why_and_fails(server: CliServer) -> None:
    server.create_paired("cli-offline", "5511911110009")
    fault = server.http.post("/sandbox/tenants/cli-offline/fault", json={"kind": "network_down"})
    assert fault.status_code == 200, fault.text
    server.wait_status("cli-offline", "reconnecting")
    result = server.cli("tenants", "restart", "cli-offline")
    assert result.exit_code == 1, result.output
    assert "reconnecting" in result.stdout and "network" in result.stdout
    assert "cannot reach WhatsApp" in result.stdout


def test_delete_asks_first_then_removes_the_tenant(server: CliServer) -> None:
    server.create_paired("cli-delete", "5511911110007")
    refused = server.cli("tenants", "delete", "cli-delete", input="n\n")
    assert refused.exit_code == 1
    assert server.status("cli-delete")["status"] == "connected"

    result = server.cli("tenants", "delete", "cli-delete", "--yes")
    assert result.exit_code == 0, result.output
    assert server.http.get("/tenants/cli-delete/status").status_code == 404
    assert "cli-delete" not in server.cli("tenants", "list").stdout


def test_unknown_tenants_are_a_clear_404(server: CliServer) -> None:
    for args in (
        ["qr", "nobody"],
        ["tenants", "restart", "nobody"],
        ["send", "nobody", "5511922220009", "x"],
    ):
        result = server.cli(*args)
        assert result.exit_code == 1, args
        assert "HTTP 404" in result.stderr, (args, result.stderr)


def test_a_wrong_api_key_is_a_clear_401(server: CliServer) -> None:
    result = server.cli("tenants", "list", ZAPMUX_API_KEY="wrong")
    assert result.exit_code == 1
    assert "HTTP 401" in result.stderr


def test_doctor_with_a_wrong_key_says_which_setting_to_fix(server: CliServer) -> None:
    result = server.cli("doctor", ZAPMUX_API_KEY="wrong")
    assert result.exit_code == 1
    assert "the server refused: HTTP 401" in result.stdout
    assert "set ZAPMUX_API_KEY to the server's admin key" in result.stdout


def test_an_unreachable_server_exits_3_with_one_line(server: CliServer, closed_url: str) -> None:
    url = closed_url
    for args in (["tenants", "list"], ["send", "x", "5511922220010", "oi"], ["doctor"]):
        result = server.cli(*args, ZAPMUX_URL=url)
        assert result.exit_code == 3, (args, result.output)
        assert f"cannot reach zapmux at {url}" in result.stderr
        assert "Traceback" not in result.output


def test_a_bad_tenant_id_is_a_usage_error_before_any_request(
    server: CliServer, closed_url: str
) -> None:
    result = server.cli("qr", "../etc", ZAPMUX_URL=closed_url)
    assert result.exit_code == 2
    assert "Tenant ids are" in result.output
