"""`zapmux doctor`, `zapmux reset` and `zapmux deliveries` against fresh live servers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cli.terminal import API_KEY
from tests.process import clean_environ

if TYPE_CHECKING:
    from tests.cli.terminal import CliServer, Receiver

Launch = Callable[..., "CliServer"]


def test_doctor_says_all_good_when_everything_is(launch: Launch, receiver: Receiver) -> None:
    live = launch(receiver.url)
    live.create_paired("shop", "5511933330001")
    result = live.cli("doctor")
    assert result.exit_code == 0, result.output
    assert f"zapmux answers at {live.url}" in result.stdout
    assert f"Flask answers at {receiver.url}" in result.stdout
    assert "tenant shop: connected (5511933330001" in result.stdout
    assert "all good" in result.stdout


def test_doctor_flags_a_down_receiver_and_an_expired_qr(launch: Launch, closed_url: str) -> None:
    # The QR codes of this server expire within ~2.5 s (0.9 s, then 5 × 0.3 s).
    live = launch(closed_url, ZAPMUX_SANDBOX_QR_SECONDS="0.3")
    live.cli("tenants", "create", "late")
    live.wait_status("late", "qr_timeout")
    result = live.cli("doctor")
    assert result.exit_code == 1, result.output
    assert f"Flask is not reachable at {closed_url}" in result.stdout
    assert "tenant late: qr_timeout" in result.stdout
    assert "`zapmux qr late` starts a new pairing" in result.stdout
    assert "2 problem(s) found" in result.stdout

    # The hint works: `zapmux qr` starts a new pairing and shows a code.
    shown = live.cli("qr", "late")
    assert shown.exit_code == 0, shown.output
    assert "Link a device" in shown.stdout


def test_qr_watch_stops_at_the_qr_timeout_instead_of_pairing_forever(
    launch: Launch, closed_url: str
) -> None:
    live = launch(closed_url, ZAPMUX_SANDBOX_QR_SECONDS="0.3")
    live.cli("tenants", "create", "nobody-scans")
    watcher = live.cli_process("qr", "nobody-scans", "--watch")
    _, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 1
    assert "nobody-scans is qr_timeout" in err and "`zapmux qr` again" in err
    time.sleep(1.5)  # had the watcher asked for a code again, a new pairing would be on
    assert live.status("nobody-scans")["status"] == "qr_timeout"


def test_doctor_tells_how_to_pair_a_logged_out_tenant_again(
    launch: Launch, receiver: Receiver
) -> None:
    live = launch(receiver.url)
    live.create_paired("gone", "5511933330002")
    fault = live.http.post("/sandbox/tenants/gone/fault", json={"kind": "logout"})
    assert fault.status_code == 200, fault.text
    live.wait_status("gone", "logged_out")
    result = live.cli("doctor")
    assert result.exit_code == 1
    assert "tenant gone: logged_out" in result.stdout
    assert "pair again with `zapmux qr gone`" in result.stdout
    assert live.cli("qr", "gone").exit_code == 0
    live.pair("gone", "5511933330002")  # and the tenant pairs again from there


def test_doctor_shows_dead_deliveries_and_retry_dead_replays_them(
    launch: Launch, receiver: Receiver
) -> None:
    live = launch(receiver.url)
    if live.http.get("/deliveries", params={"status": "dead"}).status_code == 404:
        pytest.skip("this server has no deliveries API yet")
    live.create_paired("inbox", "5511933330003")
    receiver.status = 400  # the receiver refuses: the delivery goes dead at once
    sent = live.http.post(
        "/sandbox/messages", json={"from": "5511944440003", "tenant_id": "inbox", "text": "oi"}
    )
    assert sent.status_code < 300, sent.text
    _wait(lambda: _count(live, "dead") == 1, "a dead delivery")

    result = live.cli("doctor")
    assert result.exit_code == 1
    assert "outbox: 1 dead deliveries" in result.stdout
    assert "`zapmux deliveries retry-dead`" in result.stdout

    receiver.status = 200
    assert live.cli("deliveries", "retry-dead").exit_code == 0
    _wait(lambda: [b.get("message") for b in receiver.bodies] == ["oi"], "the replay")
    _wait(lambda: live.cli("doctor").exit_code == 0, "doctor to be happy")


def test_doctor_flags_a_pinned_delivery_and_discard_unblocks_its_chat(
    launch: Launch, receiver: Receiver, closed_url: str
) -> None:
    live = launch(receiver.url)
    body = {"phone": "5511944440009", "message": "one", "empresa_id": 5}
    stuck = live.http.post("/webhook", params={"url": f"{closed_url}/old"}, json=body)
    assert stuck.status_code == 202, stuck.text
    live.http.post("/webhook", json={**body, "message": "two"})  # waits behind it
    _wait(lambda: _attempted(live), "the pinned delivery to fail")

    result = live.cli("doctor")
    assert result.exit_code == 1
    assert f"go to {closed_url}/old, which is not the current target" in result.stdout
    delivery_id = stuck.json()["delivery_id"]
    assert f"`zapmux deliveries discard {delivery_id}`" in result.stdout

    assert live.cli("deliveries", "discard").exit_code == 2  # an id or --dead
    for _ in range(20):  # refused (409) only while an attempt is under way
        discarded = live.cli("deliveries", "discard", delivery_id, "--yes")
        if "delivery_in_flight" not in discarded.output:
            break
        time.sleep(0.1)
    assert discarded.exit_code == 0, discarded.output
    assert "1 deliveries discarded" in discarded.stdout
    _wait(lambda: [b.get("message") for b in receiver.bodies] == ["two"], "the next of its chat")
    _wait(lambda: live.cli("doctor").exit_code == 0, "doctor to be happy")


def _attempted(live: CliServer) -> bool:
    rows = live.http.get("/deliveries", params={"status": "pending"}).json()["deliveries"]
    return any(r["attempts"] >= 1 for r in rows)


def test_reset_reconnects_every_paired_tenant(launch: Launch, receiver: Receiver) -> None:
    live = launch(receiver.url)
    live.create_paired("a", "5511933330004")
    live.create_paired("b", "5511933330005")
    before = live.status("a")["since"]
    result = live.cli("reset", "--yes")
    assert result.exit_code == 0, result.output
    assert "clear-all done" in result.stdout
    assert [ln.split()[1:3] for ln in result.stdout.splitlines() if ln.startswith("✅")] == [
        ["a", "connected"],
        ["b", "connected"],
    ]
    assert live.status("a")["since"] != before  # it did reconnect


def test_reset_purge_leaves_every_tenant_needing_a_scan(launch: Launch, receiver: Receiver) -> None:
    live = launch(receiver.url)
    live.create_paired("p", "5511933330006")
    result = live.cli("reset", "--purge", "--yes", "--wait", "20")
    assert result.exit_code == 0, result.output
    assert "p" in result.stdout and "awaiting_qr" in result.stdout
    assert "`zapmux qr p` shows the code" in result.stdout
    assert live.status("p")["status"] == "awaiting_qr"


def test_reset_asks_first_and_does_nothing_when_refused(launch: Launch, receiver: Receiver) -> None:
    live = launch(receiver.url)
    live.create_paired("keep", "5511933330007")
    before = live.status("keep")
    for args in (["reset"], ["reset", "--purge"]):
        result = live.cli(*args, input="n\n")
        assert result.exit_code == 1
        assert "Continue?" in result.stdout
    after = live.status("keep")
    assert (after["status"], after["since"]) == ("connected", before["since"])


SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_the_old_scripts_are_doctor_and_reset(
    launch: Launch, receiver: Receiver, tmp_path: Path
) -> None:
    live = launch(receiver.url)
    live.create_paired("old", "5511933330008")
    env = clean_environ(ZAPMUX_URL=live.url, ZAPMUX_API_KEY=API_KEY, ZAPMUX_FLASK_URL=receiver.url)

    def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPTS / name), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    debug = run("debug_whatsapp.sh")
    assert debug.returncode == 0, debug.stdout + debug.stderr
    assert "tenant old: connected" in debug.stdout and "all good" in debug.stdout
    since = live.status("old")["since"]
    refused = run("reset_whatsapp.sh")  # no terminal to answer the question: nothing done
    assert refused.returncode == 1
    assert live.status("old")["since"] == since
    reset = run("reset_whatsapp.sh", "--yes")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "clear-all done for 1 tenant(s)" in reset.stdout
    assert live.status("old")["since"] != since


def _count(live: CliServer, status: str) -> int:
    return len(live.http.get("/deliveries", params={"status": status}).json()["deliveries"])


def _wait(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
