"""One writer with group commit: every write of the store, one transaction per batch.

Callers hand a *job* (a plain function of one SQLAlchemy ``Connection``) to
:meth:`Writer.write` and wait for its commit. One task owns the writes: it takes
every job that arrived while the previous commit was under way (on SQLite, also
those handed in during the next ``GATHER_ROUNDS`` rounds of the loop) and runs them,
in arrival order, in one transaction on its own connection. A burst of sends,
receipts and outbox rows thus costs a share of a commit each, not a commit each.

- SQLite: the writer's connection is a plain ``sqlite3`` one. A batch of *quick*
  jobs (the few writes every message makes: a row or two each, handed in with
  ``quick=True``) runs right in the loop's thread: the batch costs well under a
  millisecond there, where handing it to a thread and back cost more than the batch
  itself, and kept every message waiting for both hand-offs (issue 10). Any other
  batch runs in the writer's own thread, so a write that may take long (deleting a
  tenant and its history) never stops the loop. In the loop's thread the connection
  never waits for SQLite's write lock: should another connection hold it, the batch
  goes to the thread, which waits. Nor does it checkpoint: the WAL is copied back
  into the database in the thread, before a batch there, every ``checkpoint_every``
  commits. No two of zapmux's connections ever compete for the one write lock;
  readers use others (WAL).
- PostgreSQL: the batch runs on a pooled asyncpg connection (``run_sync``); a few
  writers run side by side (:class:`Lanes`), each write going to the writer of its
  tenant's lane, so that one batch's round trips do not hold up every other write.

Nothing is answered before its commit: ``write`` returns (or raises) only once the
batch holding the job is durable. A job that raises does not spoil its neighbours:
the batch is rolled back and every job of it runs again alone, in its own
transaction, so each gets exactly the outcome it would have had by itself. Jobs must
therefore only write through ``conn`` (and may run twice before one commit), and
return plain values (rows fetched, counts), not open results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
Job = Callable[[Connection], Any]
log = logging.getLogger("zapmux.store")

#: SQLite: commits between two checkpoints (each in the writer's thread). A message's
#: commit adds some ten pages to the WAL; SQLite's own default is one at 1,000 pages.
CHECKPOINT_EVERY = 100
#: SQLite: WAL pages past which a checkpoint also waits for readers to leave the log,
#: so that it starts again from the beginning (~40 MB at SQLite's page size of 4 KB):
#: readers that keep coming can otherwise keep a plain checkpoint from ever reaching
#: the log's end, and the file grows without bound.
WAL_RESTART_PAGES = 10_000
#: SQLite: how long a batch in the writer's thread waits for a write lock another
#: connection holds (in the loop's thread a batch never waits: it goes to the thread).
LOCK_WAIT_MS = 30_000
#: SQLite: rounds of the loop a batch waits before it starts, so that the writes of
#: requests already read (their handlers not yet run) join it. A commit writes every
#: page the batch touched (some ten for a message: its row and each index's), so a
#: batch of seven messages costs little more than one of four; three rounds took the
#: inbound benchmark's batches from ~4 jobs to ~6.7 and its throughput up by a sixth.
#: Idle, a round is a few microseconds.
GATHER_ROUNDS = 3
_SQLITE_BUSY = 5


class Writer:
    """The store's only writer (see the module docstring).

    ``sync_engine`` (SQLite): run batches on it in the writer's own thread; else
    batches run on a connection of ``engine``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        sync_engine: Engine | None = None,
        max_batch: int = 500,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        self.engine = engine
        self.sync_engine = sync_engine
        self.max_batch = max_batch
        self.checkpoint_every = checkpoint_every
        self._commits = 0  # SQLite: commits since the last checkpoint
        self._lock_wait: int | None = None  # SQLite: the connection's busy_timeout now
        self._queue: list[tuple[Job, asyncio.Future[Any], bool]] = []
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._conn: AsyncConnection | None = None
        self._sync_conn: Connection | None = None
        self._thread = _Thread("zapmux-writer") if sync_engine else None
        # SQLite: what jobs keep from one committed transaction to the next (KEPT)
        self._kept: dict[str, Any] = {}
        self.batches = 0  # commits made
        self.jobs = 0  # jobs committed

    async def write(
        self, job: Callable[[Connection], T], lane: str | None = None, quick: bool = False
    ) -> T:
        """Run ``job`` in the next batch; its result once that batch is committed.
        ``quick``: the job writes a row or a few, by key (see the module docstring).
        (``lane``: see :class:`Lanes`; one writer has one.)"""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future, quick))
        self._ensure_running()
        self._pending.set()
        return await future

    def _ensure_running(self) -> None:
        task = self._task
        loop = asyncio.get_running_loop()
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        if task is not None and task.get_loop() is not loop:
            self._conn = None  # a connection of another (finished) loop is unusable
            self._pending = asyncio.Event()
            self._pending.set()
        self._task = loop.create_task(self._run(), name="store-writer")

    async def _run(self) -> None:
        while not (self._closing and not self._queue):
            await self._pending.wait()
            if self._thread is not None:  # SQLite: let writes about to come join the batch
                for _ in range(GATHER_ROUNDS):
                    await asyncio.sleep(0)
            self._pending.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Job, asyncio.Future[Any], bool]]) -> None:
        live = [one for one in batch if not one[1].cancelled()]
        if not live:
            return
        try:
            results = await self._transaction(
                [job for job, _, _ in live], all(quick for _, _, quick in live)
            )
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0][1], exc=exc)
                return
            for one in live:  # find out whose job failed: each alone, once
                await self._commit([one])
            return
        self.batches += 1
        self.jobs += len(live)
        for (_, future, _), result in zip(live, results, strict=True):
            _settle(future, result=result)

    async def _transaction(self, jobs: list[Job], quick: bool) -> list[Any]:
        if self._thread is not None:
            if quick and self._commits < self.checkpoint_every:
                try:
                    results = self._sync_batch(jobs, wait=False)
                except _LockHeld:
                    pass  # another connection holds the write lock: wait in the thread
                else:
                    return results
            return await self._thread.run(self._sync_batch, jobs, True)
        conn = await self._connection()
        try:
            async with conn.begin():
                return await conn.run_sync(_run_jobs, jobs)
        except Exception:
            await self._discard()  # whatever state it is in, the next batch starts clean
            raise

    def _sync_batch(self, jobs: list[Job], wait: bool) -> list[Any]:
        """The batch in one transaction on the writer's own connection: in the writer's
        thread (``wait``: for a write lock held elsewhere, after a checkpoint when one
        is due), or in the loop's (raising :class:`_LockHeld` rather than waiting)."""
        assert self.sync_engine is not None
        if self._sync_conn is None or self._sync_conn.closed:
            self._sync_conn = self.sync_engine.connect()
            self._lock_wait = None
            self._pragma("wal_autocheckpoint=0")  # checkpoints: in the thread, below
        conn = self._sync_conn
        notes: dict[str, Any] = {KEPT: self._kept}
        try:
            lock_wait = LOCK_WAIT_MS if wait else 0
            if self._lock_wait != lock_wait:
                self._pragma(f"busy_timeout={lock_wait}")
                self._lock_wait = lock_wait
            if wait and self._commits >= self.checkpoint_every:
                self._checkpoint()
            with conn.begin():
                results = _run_jobs(conn, jobs, notes)
            self._commits += 1
        except Exception as exc:
            if _in_doubt(exc):  # else rolled back, and the connection goes on
                conn.invalidate()  # not back to the pool: its pragmas are the writer's own
                conn.close()
                self._sync_conn = None
            if not wait and _lock_held(exc):
                raise _LockHeld from exc
            raise
        for committed in notes.get(ON_COMMIT, ()):  # outside: the batch stands, whatever
            committed()
        return results

    def _pragma(self, pragma: str) -> list[Any]:
        assert self._sync_conn is not None
        cursor = self._sync_conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            return list(cursor.execute(f"PRAGMA {pragma}"))
        finally:
            cursor.close()

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database (in the writer's thread, between two
        transactions): the next transaction then starts the log again from its
        beginning, unless a reader still reads the end of it."""
        ((_, pages, _),) = self._pragma("wal_checkpoint(PASSIVE)")
        if pages >= WAL_RESTART_PAGES:  # readers kept it from starting again: wait for them
            self._pragma("wal_checkpoint(RESTART)")
        self._commits = 0

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await self.engine.connect()
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        """Finish what was handed in, then stop (before the engines are disposed)."""
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is _loop_or_none():
            self._closing = True
            self._pending.set()
            await task
            self._closing = False
        await self._discard()
        if self._thread is not None:
            await self._thread.run(self._close_sync)
            self._thread.shutdown()

    def _close_sync(self) -> None:
        conn, self._sync_conn = self._sync_conn, None
        if conn is not None:
            conn.close()
        if self.sync_engine is not None:
            self.sync_engine.dispose()


class _LockHeld(Exception):
    """SQLite: another connection holds the write lock (a batch in the loop's thread
    does not wait for it)."""


def _lock_held(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return (
        isinstance(orig, sqlite3.OperationalError)
        and (getattr(orig, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_BUSY
    )


def _in_doubt(exc: BaseException) -> bool:
    """Whether a failed batch leaves the writer's connection in doubt: a database error
    other than a row refused (a duplicate) or a lock held elsewhere. A job's own error
    (``TenantNotFound``…) and those two are rolled back like any, and a new connection
    for each would cost every duplicate message a connect and its statements prepared
    again."""
    return (
        isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError) and not _lock_held(exc)
    )


#: The lane of the webhook deliverer's rounds (``OutboxTables.finish_and_claim``).
DELIVERIES = "zapmux:deliveries"


class Lanes:
    """PostgreSQL: a few writers side by side, each a :class:`Writer` on a connection of
    its own, so that batches overlap: a batch waits for one round trip per statement,
    and one writer alone kept every other write waiting behind them.

    A write names its *lane*, the tenant it writes for, or none. The writes of one
    tenant lane always go to the same writer, in the order handed in; writes without
    a lane all go to the first writer, in order, and never to the others. So what was
    ordered through the one writer still is: among a tenant's lane writes, among the
    writes without a lane (every outbox row, so deliveries keep their order per chat),
    and any write handed in after another's commit sees it. Only writes handed in
    together, one with a lane and one without, may commit in either order; lanes are
    given only to writes of a tenant's messages that nothing else orders against
    (``add_message``, ``mark_sent``, ``apply_receipt``), and to the deliverer's rounds
    (``DELIVERIES``: outcomes and claims, which insert no outbox row: the rows this
    node queues are inserted by the first writer alone, one transaction after another,
    so a claim beside it sees a prefix of them by id, and its cursor skips none).
    Writes of different writers that wait for each other's rows in opposite orders
    are a deadlock PostgreSQL breaks by failing one transaction; its jobs then run
    again alone (as in :class:`Writer`), with the outcome each would have had by itself.
    """

    def __init__(self, engine: AsyncEngine, lanes: int) -> None:
        self.writers = [Writer(engine) for _ in range(max(1, lanes))]

    async def write(
        self, job: Callable[[Connection], T], lane: str | None = None, quick: bool = False
    ) -> T:
        """:meth:`Writer.write` on the writer of ``lane``."""
        return await self.writers[self._index(lane)].write(job, quick=quick)

    def _index(self, lane: str | None) -> int:
        others = len(self.writers) - 1
        if lane is None or others == 0:
            return 0
        return 1 + zlib.crc32(lane.encode()) % others

    @property
    def batches(self) -> int:
        return sum(writer.batches for writer in self.writers)

    @property
    def jobs(self) -> int:
        return sum(writer.jobs for writer in self.writers)

    async def close(self) -> None:
        for writer in self.writers:
            await writer.close()


class Reader:
    """Reads beside the writer. On SQLite each read runs in one of a few threads on a
    plain ``sqlite3`` connection: one hop per read, where aiosqlite takes one per
    step (cursor, execute, fetch, close). Else through the async pool."""

    def __init__(self, engine: AsyncEngine, sync_engine: Engine | None, threads: int = 2) -> None:
        self.engine = engine
        # PostgreSQL: a read is its statements alone (each sees what was committed when
        # it began, as in a READ COMMITTED transaction), without the BEGIN and ROLLBACK
        # the pool's connections would wrap it in: one round trip where it took three.
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sync_engine = sync_engine
        self._threads = _Threads(threads, "zapmux-reader") if sync_engine else None
        self._here: Connection | None = None  # SQLite: seeks run on it, in the loop's thread

    async def read(self, query: Callable[[Connection], T]) -> T:
        """``query``'s result, run on a connection of its own."""
        if self._threads is None:
            async with self._reads.connect() as conn:
                return await conn.run_sync(query)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads.pool(), self._sync_read, query)

    async def seek(self, query: Callable[[Connection], T]) -> T:
        """``query``'s result, for a read that is a seek in an index (microseconds), as
        every incoming text makes: on SQLite it runs at once in this thread, where a hop
        to a reader thread and back would cost several times the read; else as
        :meth:`read`."""
        if self.sync_engine is None:
            return await self.read(query)
        if self._here is None or self._here.closed:
            self._here = self.sync_engine.connect()
        try:
            return query(self._here)
        finally:
            self._here.rollback()  # ends the read: the next one sees what was committed since

    def _sync_read(self, query: Callable[[Connection], T]) -> T:
        assert self.sync_engine is not None
        with self.sync_engine.connect() as conn:
            return query(conn)

    def close(self) -> None:
        """Let the read threads go (a later read starts new ones)."""
        here, self._here = self._here, None
        if here is not None:
            here.close()
        if self._threads is not None:
            self._threads.shutdown()


class _Thread:
    """One thread that runs what it is handed, in order: the writer's. A hop costs a
    queue put and one wake-up of the loop (a thread pool's futures, locks and callback
    chain cost several times that, once per batch). Started on first use, let go on
    shutdown; used again after, it starts anew."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inbox: queue.SimpleQueue[Any] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the thread; its result (or its exception) here."""
        if self._inbox is None:
            self._inbox = queue.SimpleQueue()
            threading.Thread(
                target=_serve, args=(self._inbox,), name=self.name, daemon=True
            ).start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inbox.put((loop, future, fn, args))
        return await future

    def shutdown(self) -> None:
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            inbox.put(None)


def _serve(inbox: queue.SimpleQueue[Any]) -> None:
    while (item := inbox.get()) is not None:
        loop, future, fn, args = item
        try:
            result, error = fn(*args), None
        except BaseException as exc:
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_resolve, future, result, error)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Threads:
    """A thread pool started on first use and let go on close: a closed store holds
    no threads, and one used again after close starts a new pool."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.size, self.name)
        return self._pool

    def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


#: ``conn.info`` key of what the jobs of one transaction may note for each other (a new,
#: empty dict per transaction; ``store.guard`` keeps the tenant lives it confirmed).
TRANSACTION_NOTES = "zapmux.transaction"
#: Notes: the callables to call once the transaction has committed (none if it failed).
ON_COMMIT = "on_commit"
#: Notes, on SQLite only: a dict the writer keeps from one transaction to the next, for
#: what jobs may carry over once committed. Only there can nothing else change the
#: database between two of the writer's transactions (no other writer, no other node).
KEPT = "kept"


def _run_jobs(conn: Connection, jobs: list[Job], notes: dict[str, Any] | None = None) -> list[Any]:
    conn.info[TRANSACTION_NOTES] = {} if notes is None else notes
    try:
        return [job(conn) for job in jobs]
    finally:
        del conn.info[TRANSACTION_NOTES]


def transaction_notes(conn: Connection) -> dict[str, Any] | None:
    """The notes of the transaction a write job runs in (None outside the writer)."""
    return conn.info.get(TRANSACTION_NOTES)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():  # its caller gave up waiting; the write stands regardless
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
