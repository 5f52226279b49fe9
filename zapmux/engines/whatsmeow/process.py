"""One tenant's worker process, seen from the server (never imports neonize).

A worker dials as many times as its session's ``connect()`` asks (one process for as
long as the tenant runs). Its heartbeats feed a watchdog: a worker silent for
``hang_timeout_s`` is killed, and its session reports the hang like a crash.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zapmux import events as ev
from zapmux.engines.base import EventSink, NotConnected
from zapmux.engines.whatsmeow import protocol
from zapmux.errors import (
    EngineError,
    NewContactRestricted,
    SendLater,
    ZapmuxError,
)

WORKER_MODULE = "zapmux.engines.whatsmeow.worker"
DEFAULT_MEDIA_MAX_BYTES = 16 * 1024 * 1024
BOT_TAG_ENV = "NEONIZE_BOT_TAG"
_OUTCOMES = (ev.Disconnected, ev.PermanentDisconnect, ev.QrTimeout)
_LINE_LIMIT = 1024 * 1024
_KILL_WAIT_S = 3.0
#: A worker's error kinds (``protocol.ERROR_KINDS``) as zapmux's errors; others EngineError.
_ERRORS: dict[str, type[ZapmuxError]] = {
    "not_connected": NotConnected,
    "new_contact_restricted": NewContactRestricted,
    "rate_limited": SendLater,
}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How worker processes are started (the defaults are production's)."""

    python: str = sys.executable
    proxy: str | None = None
    log_level: str = "INFO"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 5.0
    logout_timeout_s: float = 30.0  # a stopped tenant's logout: connect, unlink, stop
    media_max_bytes: int = DEFAULT_MEDIA_MAX_BYTES
    qr_first_s: float | None = None
    qr_next_s: float | None = None
    qr_total: int | None = None
    heartbeat_s: float = 10.0  # the worker says it is alive this often
    hang_timeout_s: float = 60.0  # silent this long: killed, reported like a crash
    # neonize opens a new store connection pool per dial and never closes it (measured:
    # one file or PostgreSQL connection and ~0.25 MB each): a fresh process after this
    # many dials
    max_dials: int = 8
    max_rss_mb: int | None = None  # a connected worker above this is replaced when idle
    recycle_idle_s: float = 30.0  # "idle": no command and no event for this long
    lean_imports: bool = True  # defer neonize's unused imports (lean.py): ~12 MB less
    bot_tag: bool = False  # neonize's <bot biz_bot="1"/> on every message: an "AI" label
    extra_env: dict[str, str] = field(default_factory=dict)

    def worker_args(self) -> list[str]:
        args = ["--log-level", self.log_level, "--media-max-bytes", str(self.media_max_bytes),
                "--heartbeat-s", str(self.heartbeat_s)]  # fmt: skip
        if self.proxy:
            args += ["--proxy", self.proxy]
        if not self.lean_imports:
            args.append("--full-imports")
        for flag, value in (
            ("--qr-first-s", self.qr_first_s),
            ("--qr-next-s", self.qr_next_s),
            ("--qr-total", self.qr_total),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args


class WorkerProcess:
    """A worker process, its channel and the tasks that read it.

    Events are passed to ``sink`` in the order the worker sent them. A dial is *open*
    from ``connect`` until the worker reports its outcome (a disconnect or a permanent
    end); when the process ends with a dial open, and nobody asked it to stop, a
    ``Disconnected`` naming the exit is passed last. A worker that dies while idle
    between dials says nothing: the next ``connect()`` starts another.
    """

    def __init__(
        self, tenant_id: str, sink: EventSink, options: WorkerOptions, log: logging.Logger
    ) -> None:
        self.tenant_id, self.options, self._sink, self._log = tenant_id, options, sink, log
        self.proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._hello: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.dial_open = True  # a new worker is started to dial
        self.dials = 0  # connect commands sent
        self.rss_kb = 0  # from the latest heartbeat
        self.worker_state = "starting"  # likewise
        self._last_activity = time.monotonic()  # a command or an event
        self._stopping = False  # we asked it to stop: report nothing more
        self._exit_note: str | None = None
        self._closed = asyncio.Event()
        self.on_heartbeat: Callable[[WorkerProcess], None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def idle_between_dials(self) -> bool:
        """Up, said hello, no dial open: ready for the next ``connect``."""
        return self.alive and self._hello.done() and not self.dial_open and not self._stopping

    def over_memory_ceiling(self) -> bool:
        """Its last heartbeat reported more than ``max_rss_mb`` (when one is set)."""
        limit = self.options.max_rss_mb
        return limit is not None and self.rss_kb > limit * 1024

    def quiet_for(self) -> float:
        """Seconds since the last command or event (0 while a command is pending)."""
        return 0.0 if self._pending else time.monotonic() - self._last_activity

    def redirect(self, sink: EventSink) -> None:
        """Send this worker's next events to ``sink``."""
        self._sink = sink

    async def spawn(self, store: str) -> None:
        """Start the process with two pipes as its channel (commands in, events out).

        ``store`` (a SQLite path or a postgres URL) goes in the environment: a URL may
        hold a password, and anyone on the machine can read a command line.
        """
        command_r, command_w = os.pipe()
        event_r, event_w = os.pipe()
        theirs = (command_r, event_w)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self._command(theirs),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=theirs,
                env=self._environment(store),
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            os.close(command_w)
            os.close(event_r)
            raise EngineError(f"cannot start the whatsmeow worker: {exc}") from exc
        finally:
            for fd in theirs:  # the child holds its copies; EOF then means it is gone
                os.close(fd)
        reader, self._writer = await protocol.open_channel(event_r, command_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        name = f"whatsmeow-{self.tenant_id}-{self.proc.pid}"
        self._tasks = [
            asyncio.create_task(self._read(reader), name=f"{name}-channel"),
            asyncio.create_task(self._pump(self.proc.stdout, "stdout"), name=f"{name}-stdout"),
            asyncio.create_task(self._pump(self.proc.stderr, "stderr"), name=f"{name}-stderr"),
        ]
        self._tasks.append(asyncio.create_task(self._watch(), name=f"{name}-watch"))
        self._log.debug("started whatsmeow worker pid %d", self.proc.pid)

    def _environment(self, store: str) -> dict[str, str]:
        """The server's environment, plus the store and neonize's bot tag.

        neonize reads ``NEONIZE_BOT_TAG`` when its library loads: anything but ``off``
        adds ``<bot biz_bot="1"/>`` to each message to a person, which recipients see
        as an "AI" label. Off unless ``ZAPMUX_WHATSMEOW_BOT_TAG=on``.
        """
        bot_tag = "on" if self.options.bot_tag else "off"
        extra = self.options.extra_env
        return {
            **os.environ, "PYTHONUNBUFFERED": "1", **extra,
            BOT_TAG_ENV: bot_tag, protocol.STORE_ENV: store,
        }  # fmt: skip

    def _command(self, fds: tuple[int, int]) -> list[str]:
        return [
            self.options.python, "-m", WORKER_MODULE,
            "--tenant", self.tenant_id, "--fds", f"{fds[0]},{fds[1]}",
            "--parent-pid", str(os.getpid()), *self.options.worker_args(),
        ]  # fmt: skip

    async def wait_ready(self) -> bool:
        """Wait for the worker's hello (neonize loaded); False if it died or hung."""
        timeout = self.options.ready_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(self._hello), timeout) is not None
        except TimeoutError:
            self._exit_note = f"worker did not start within {timeout:g} s"
            await self._kill()
            return False

    async def request(self, op: str, args: dict[str, Any], within_s: float) -> Any:
        """Send a command and return its result; errors translated to zapmux's."""
        if not self.alive or self._writer is None:
            raise NotConnected(f"tenant {self.tenant_id} has no WhatsApp session running")
        command_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        self._last_activity = time.monotonic()
        if op == "connect":
            self.dial_open, self.dials = True, self.dials + 1
        try:
            command = {"type": "command", "id": command_id, "op": op, "args": args}
            self._writer.write(protocol.pack(command))
            await self._writer.drain()
            reply = await asyncio.wait_for(future, within_s)
        except TimeoutError as exc:
            raise EngineError(
                f"the WhatsApp worker did not answer {op!r} in {within_s:g} s"
            ) from exc
        except (ConnectionError, protocol.ProtocolError) as exc:
            raise NotConnected(f"the WhatsApp worker of {self.tenant_id} is gone") from exc
        finally:
            self._pending.pop(command_id, None)
            self._last_activity = time.monotonic()
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        message = str(error.get("message") or f"{op} failed")
        raise _ERRORS.get(str(error.get("kind")), EngineError)(message)

    async def stop(self) -> None:
        """Ask the worker to stop; terminate it, then kill it, if it does not."""
        self._stopping = True
        if not self.alive:
            return
        with contextlib.suppress(Exception):
            await self.request("stop", {}, self.options.stop_timeout_s)
        if await self._wait_exit(self.options.stop_timeout_s):
            return
        self._log.warning("whatsmeow worker %s did not stop; terminating it", self.pid)
        with contextlib.suppress(ProcessLookupError):
            assert self.proc is not None
            self.proc.terminate()
        if not await self._wait_exit(_KILL_WAIT_S):
            await self._kill()

    async def _kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    async def _wait_exit(self, within_s: float) -> bool:
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def wait_closed(self) -> None:
        """Wait until the process is gone and every event it sent was delivered."""
        await self._closed.wait()

    # -- tasks -----------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await self._next_frame(reader)) is not None:
                await self._dispatch(message)
        except TimeoutError:
            limit = self.options.hang_timeout_s
            self._exit_note = f"worker hung: no heartbeat for {limit:g} s"
            self._log.warning("whatsmeow worker %s hung (no heartbeat for %g s); killing it",
                              self.pid, limit)  # fmt: skip
            await self._kill()
        except (protocol.ProtocolError, ConnectionError, ValueError, TypeError) as exc:
            # Nothing more can be read from it: end it, so the tenant reconnects (with
            # this as its last_error) instead of looking connected with nothing arriving.
            self._log.warning("bad frame from the whatsmeow worker: %s", exc)
            self._exit_note = f"the worker sent a bad frame ({exc}); restarted"
            await self._kill()

    async def _next_frame(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        # The watchdog: once the worker said hello it sends a heartbeat every few
        # seconds; silence for hang_timeout_s means its event loop is stuck.
        if not self._hello.done():
            return await protocol.read_frame(reader)
        async with asyncio.timeout(self.options.hang_timeout_s):
            return await protocol.read_frame(reader)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "heartbeat":
            self.rss_kb = int(message.get("rss_kb") or 0)
            self.worker_state = str(message.get("state") or "")
            if self.on_heartbeat is not None:
                self.on_heartbeat(self)
        elif kind == "hello" and not self._hello.done():
            self._hello.set_result(int(message.get("pid") or 0))
        elif kind == "reply":
            future = self._pending.get(message.get("id", -1))
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "event":
            event = protocol.decode_event(message)
            self._last_activity = time.monotonic()
            if isinstance(event, _OUTCOMES):
                self.dial_open = False
                if not self._hello.done():  # it could not even start (neonize missing)
                    self._hello.set_result(None)
            if self._stopping:
                self._log.debug("dropped %s after stop", type(event).__name__)
                return  # not acknowledged: the worker keeps it until it exits
            recorded = await self._deliver(event)
            if "id" in message:
                await self._answer_event(message["id"], recorded)

    async def _deliver(self, event: ev.Event) -> bool:
        """Hand the event to the sink; False when the sink failed (it was not recorded)."""
        try:
            await self._sink(event)
        except Exception:
            self._log.exception("event sink failed on %s", type(event).__name__)
            return False
        return True

    async def _answer_event(self, event_id: int, recorded: bool) -> None:
        """Tell the worker whether the event is durably recorded (it resends it if not)."""
        if self._writer is None:
            return
        try:
            self._writer.write(
                protocol.pack({"type": "ack" if recorded else "nack", "id": event_id})
            )
            await self._writer.drain()
        except (ConnectionError, RuntimeError):  # the worker is gone: nothing to tell
            pass

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the limit: skip it
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text:
                if name == "stderr":
                    self._stderr_tail.append(text)
                self._log.debug("[worker %s %s] %s", self.pid, name, text)

    async def _watch(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        # Drain what it said before it died, so its own last event comes first.
        await asyncio.wait(self._tasks[:3], timeout=5.0)
        if self._writer is not None:
            self._writer.close()
        if not self._hello.done():
            self._hello.set_result(None)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NotConnected("the WhatsApp worker exited"))
        self._log.debug("whatsmeow worker %s exited with %s", self.pid, code)
        if self.dial_open and not self._stopping:
            await self._deliver(ev.Disconnected(reason=self.describe_exit(code)))
        self._closed.set()

    def describe_exit(self, code: int) -> str:
        """Why the worker is gone, for the tenant's ``last_error``."""
        if self._exit_note:
            return self._exit_note
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "signal"
            return f"worker exited unexpectedly: {name} (signal {-code})"
        tail = next((line for line in reversed(self._stderr_tail) if line.strip()), "")
        return f"worker exited with code {code}" + (f": {tail}" if tail else "")
