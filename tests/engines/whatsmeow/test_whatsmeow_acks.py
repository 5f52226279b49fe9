"""The server side of the worker channel: a message is acknowledged to the worker only
once the server recorded it (issue 14, 3). The worker here is a real process speaking
the channel's frames (a stand-in for neonize's, which cannot reach WhatsApp here)."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import sys
from pathlib import Path

from zapmux import events as ev
from zapmux.engines.whatsmeow.client import WorkerOptions
from zapmux.engines.whatsmeow.process import WorkerProcess

# Says hello, sends one message event with an id until the server answers "ack",
# writes every answer it got to the file named by STAND_IN_LOG, then exits.
STAND_IN = f"""#!{sys.executable}
import json, os, struct, sys
fds = sys.argv[sys.argv.index("--fds") + 1].split(",")
commands, events = os.fdopen(int(fds[0]), "rb", 0), os.fdopen(int(fds[1]), "wb", 0)
def send(obj):
    body = json.dumps(obj).encode()
    events.write(struct.pack(">I", len(body)) + body)
def read():
    size = struct.unpack(">I", commands.read(4))[0]
    return json.loads(commands.read(size))
send({{"type": "hello", "pid": os.getpid()}})
message = {{"type": "event", "event": "message", "id": 7, "data": {{
    "message_id": "M1", "chat": "5511988887777@s.whatsapp.net",
    "sender": "5511988887777@s.whatsapp.net", "phone": "5511988887777",
    "message_type": "texto", "text": "oi", "timestamp": 1.0}}}}
answers = []
while not answers or answers[-1]["type"] != "ack":
    send(message)
    answers.append(read())
open(os.environ["STAND_IN_LOG"], "w").write(json.dumps(answers))
"""


async def test_a_message_is_acknowledged_only_once_recorded(tmp_path: Path) -> None:
    script = tmp_path / "stand_in_worker"
    script.write_text(STAND_IN)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    answers_file = tmp_path / "answers.json"
    recorded: list[ev.Event] = []
    failures = [RuntimeError("the store is away")]  # the first attempt fails

    async def sink(event: ev.Event) -> None:
        if failures:
            raise failures.pop()
        recorded.append(event)

    options = WorkerOptions(python=str(script), extra_env={"STAND_IN_LOG": str(answers_file)})
    worker = WorkerProcess("t1", sink, options, logging.getLogger("test"))
    await worker.spawn("/nowhere")
    assert await worker.wait_ready()
    await asyncio.wait_for(worker.wait_closed(), 20)
    answers = json.loads(answers_file.read_text())
    assert answers == [{"type": "nack", "id": 7}, {"type": "ack", "id": 7}]
    assert [e.message_id for e in recorded if isinstance(e, ev.IncomingMessage)] == ["M1"]


# Says hello, then a frame that is not JSON, then waits to be killed.
GARBLED = f"""#!{sys.executable}
import json, os, struct, sys, time
fds = sys.argv[sys.argv.index("--fds") + 1].split(",")
events = os.fdopen(int(fds[1]), "wb", 0)
def send(body):
    events.write(struct.pack(">I", len(body)) + body)
send(json.dumps({{"type": "hello", "pid": os.getpid()}}).encode())
send(b"{{not json")
time.sleep(60)
"""


async def test_a_worker_that_garbles_its_channel_is_ended_as_a_disconnect(
    tmp_path: Path,
) -> None:
    """A channel nothing more can be read from must not leave the tenant 'connected'."""
    script = tmp_path / "garbling_worker"
    script.write_text(GARBLED)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    seen: list[ev.Event] = []

    async def sink(event: ev.Event) -> None:
        seen.append(event)

    worker = WorkerProcess("t1", sink, WorkerOptions(python=str(script)), logging.getLogger("t"))
    await worker.spawn("/nowhere")
    assert await worker.wait_ready()
    await asyncio.wait_for(worker.wait_closed(), 20)
    assert not worker.alive
    [ended] = seen
    assert isinstance(ended, ev.Disconnected) and "bad frame" in ended.reason
