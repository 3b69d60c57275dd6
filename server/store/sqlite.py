"""The embedded store: one SQLite file in WAL mode, written by one thread with group commit.

Theory of operation: every write is an `_Op`, a function run against the writer's
connection. The writer thread takes the first waiting op, then every op queued behind it
(up to `group_commit_max`), runs each inside its own SAVEPOINT in one transaction and
commits once, so a thousand concurrent sends cost one fsync. Only after COMMIT returns are
the callers' futures resolved, which is what makes `ack` durable. An op that fails rolls
back to its savepoint and fails alone; a failed COMMIT fails the whole batch.

The writer is the only place that assigns `seq`: it keeps each room's head in memory
(read from the table on first use, dropped when a commit fails), so the next `seq` costs
no query. A new message goes to an append log and is folded into `messages` later, a
room at a time (`sqlite_fold`); the writer keeps the unfolded ones in memory and
publishes them to readers after each commit. Reads run on a small pool of threads with
connections of their own. A checkpointer thread copies the WAL into the database beside
the writer (`Checkpointer`), and read marks that wait for the writer share one op
(`_ReadMarks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from server.config import ConfigError
from server.errors import Conflict, InternalError, NotFound
from server.ids import MediaId, MessageKind, RoomId, UserId
from server.store.base import (
    Appended,
    ChargeRow,
    JobRow,
    RoomRecord,
    StoredMessage,
    Tx,
)
from server.store.sqlite_checkpoint import WRITER_AUTOCHECKPOINT, Checkpointer
from server.store.sqlite_fold import (
    GENERATION_ROWS,
    IDLE_FOLD_ROWS,
    IDLE_FOLD_S,
    LOG_SCHEMA,
    MESSAGE_FIELDS,
    MSG_COLUMNS,
    Probe,
    Published,
    WriterState,
    fold_all,
    message,
    row_chunks,
    unfolded,
    views,
)
from server.store.sqlite_tx import SESSION_SCHEMA, SQLiteTx

log = logging.getLogger("confide.store")
T = TypeVar("T")
R = TypeVar("R")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    provider TEXT NOT NULL,
    plan TEXT NOT NULL,
    service TEXT NOT NULL,
    messaging INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_client ON rooms (client);
CREATE INDEX IF NOT EXISTS rooms_provider ON rooms (provider);
CREATE TABLE IF NOT EXISTS provider_changes (
    room TEXT NOT NULL,
    old_provider TEXT NOT NULL,
    new_provider TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages ({MESSAGE_FIELDS},
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_cmid ON messages (room, sender, cmid)
    WHERE cmid IS NOT NULL;
CREATE TABLE IF NOT EXISTS reads (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
"""

def _room(row: tuple[Any, ...]) -> RoomRecord:
    return RoomRecord(RoomId(row[0]), UserId(row[1]), UserId(row[2]), row[3], row[4],
                      bool(row[5]), row[6])


Op = Callable[[sqlite3.Connection, WriterState], Any]

VIEW_TRIES = 3  # see `view`
MIN_COMMIT_INTERVAL_S = 0.002  # group commit: at most about 500 commits a second
READ_MARK_DELAY_S = 0.05  # marks nobody waits for are written together, this often
WAL_SIZE_LIMIT = 64 << 20  # the WAL file is cut back to this after a checkpoint
# The writer's page cache (SQLite's default is 2 MB): with thousands of active rooms the
# pages it touches outgrow the default, and every miss is a read from the OS.
WRITER_CACHE_KIB = 64 << 10


@dataclass(slots=True)
class _Pending:
    op: Op
    future: asyncio.Future[Any]
    probe: Probe | None = None  # an append's duplicate check, made for the whole batch


class _ReadMarks:
    """Read marks waiting for the writer, written by one op.

    A client sends a read mark for nearly every message it sees, so marks arrive as often
    as messages. One op per mark would double the writer's work; instead the first mark
    opens a batch and later marks join it (the highest per room and user) until the writer
    takes it, which closes it: the next mark opens a new one. Every waiting caller awaits
    the batch's one future, which resolves after the commit, like any other write.

    A batch opened by `read_later` (a mark nobody waits for) is *held*: it goes to the
    writer READ_MARK_DELAY_S later, so the marks of that time share one transaction
    instead of riding in most of the commits of the messages. A caller that waits
    (`set_read`) sends a held batch to the writer at once.
    """

    __slots__ = ("close", "future", "given", "held", "taken", "then")

    def __init__(self, close: Callable[[_ReadMarks], None],
                 future: asyncio.Future[Any]) -> None:
        self.close = close  # no more marks join this one (under the store's lock)
        self.future = future  # the op's
        self.given: dict[tuple[RoomId, UserId], int] = {}
        self.taken: dict[tuple[RoomId, UserId], int] | None = None
        self.held: asyncio.TimerHandle | None = None  # until it goes to the writer
        self.then: list[tuple[tuple[RoomId, UserId], Callable[[int | None], None]]] = []

    def done(self, future: asyncio.Future[Any]) -> None:
        """On the loop, once written (or failed): tell the callers of `read_later`."""
        stored = None if future.cancelled() or future.exception() else future.result()
        for key, then in self.then:
            then(None if stored is None else stored[key])

    def op(self, conn: sqlite3.Connection, _: WriterState) -> dict[tuple[RoomId, UserId], int]:
        if self.taken is None:  # the first run closes it (an op may run twice)
            self.close(self)
            self.taken = self.given
        stored: dict[tuple[RoomId, UserId], int] = {}
        marks = [(room, user, seq) for (room, user), seq in self.taken.items()]
        for count, values in row_chunks(marks, _MARKS_MAX_ROWS):
            for room, user, seq in conn.execute(_marks_sql(count), values).fetchall():
                stored[room, user] = seq
        return stored


# Read marks are written many to a statement (each key once: `given` is a dict), like the
# log's rows: one call into SQLite, and one wait for the GIL after it, for up to this many.
_MARKS_MAX_ROWS = 256


@functools.cache
def _marks_sql(rows: int) -> str:
    return ("INSERT INTO reads (room, user, seq) VALUES " + ", ".join(["(?, ?, ?)"] * rows)
            + " ON CONFLICT (room, user) DO UPDATE SET seq = MAX(seq, excluded.seq)"
            " RETURNING room, user, seq")


DB_FILE = "confide.db"


def check_database(path: Path) -> None:
    """Before a node starts: a file at `path` must open as an SQLite database, else a
    `ConfigError` naming it. Opened read-only as immutable, so nothing is written and no
    `-wal` or `-shm` file is made."""
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"data: {path} does not open as an SQLite database ({exc}); "
                          "it was left as it is") from None


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class _SessionMethods:
    """The `SessionStore` half of `SQLiteStore` (see `server.store.base`)."""

    _write: Callable[[Op], Any]
    _read: Callable[..., Any]
    _published: Published

    async def transact(self, fn: Callable[[Tx], R]) -> R:
        return cast(R, await self._write(lambda conn, state: fn(SQLiteTx(conn, state))))

    async def view(self, fn: Callable[[Tx], R]) -> R:
        """`fn` in a read transaction. It takes a room's unfolded messages when it first
        needs them; if a fold was committed meanwhile, it may have missed some (folded
        after its transaction began), so it runs again, and its last try takes every
        room's before it begins."""
        published = self._published

        def run(conn: sqlite3.Connection) -> R:
            for attempt in range(VIEW_TRIES):
                taken = views(published) if attempt == VIEW_TRIES - 1 else None
                folds = published.folds
                conn.execute("BEGIN")
                try:
                    tx = SQLiteTx(conn, None, published, taken)
                    result = fn(tx)
                finally:
                    conn.execute("COMMIT")
                if taken is not None or not tx.looked or published.folds == folds:
                    return result
            raise AssertionError("the last try takes every room's messages first")

        return cast(R, await self._read(run))

    async def due_jobs(self, now_ms: int, limit: int) -> list[JobRow]:
        rows = await self._read(lambda c: c.execute(
            "SELECT key, due_ms, kind, subject FROM jobs WHERE due_ms <= ?"
            " ORDER BY due_ms, key LIMIT ?", (now_ms, limit)).fetchall())
        return [JobRow(*r) for r in rows]

    async def next_due_ms(self) -> int | None:
        row = await self._read(lambda c: c.execute("SELECT MIN(due_ms) FROM jobs").fetchone())
        return None if row[0] is None else int(row[0])

    async def pending_charges(self, now_ms: int, limit: int) -> list[ChargeRow]:
        rows = await self._read(lambda c: c.execute(
            "SELECT key, room, body, attempts, next_try_ms FROM charges"
            " WHERE delivered_ms IS NULL AND next_try_ms <= ? ORDER BY next_try_ms, key"
            " LIMIT ?", (now_ms, limit)).fetchall())
        return [ChargeRow(*r) for r in rows]

    async def next_charge_ms(self) -> int | None:
        row = await self._read(lambda c: c.execute(
            "SELECT MIN(next_try_ms) FROM charges WHERE delivered_ms IS NULL").fetchone())
        return None if row[0] is None else int(row[0])

    async def charge_attempted(self, key: str, delivered: bool, next_try_ms: int,
                               now_ms: int) -> None:
        def op(conn: sqlite3.Connection, _: WriterState) -> None:
            if delivered:
                conn.execute("UPDATE charges SET delivered_ms = ?, attempts = attempts + 1"
                             " WHERE key = ?", (now_ms, key))
            else:
                conn.execute("UPDATE charges SET attempts = attempts + 1, next_try_ms = ?"
                             " WHERE key = ?", (next_try_ms, key))

        await self._write(op)


class SQLiteStore(_SessionMethods):
    """The embedded `Store` (see `server.store.base` for what it guarantees)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", group_commit_max: int = 512,
                 readers: int = 2, generation_rows: int = GENERATION_ROWS) -> None:
        if generation_rows < 1:
            raise ValueError(f"generation_rows must be at least 1, not {generation_rows}")
        self.path = path
        self._generation_rows = generation_rows
        self._synchronous = synchronous
        self._max_batch = group_commit_max
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-read")
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None
        self._marks: _ReadMarks | None = None  # read marks waiting for the writer
        self._marks_lock = threading.Lock()
        self._published = Published()  # messages not yet folded, by room (`sqlite_fold`)
        self._checkpoints = 0  # rounds of the checkpointers of earlier opens
        self.commits = 0  # statistics: transactions committed
        self.ops = 0  # statistics: writes committed

    # -- life ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn, checkpoint_conn = await asyncio.to_thread(self._open_writer)
        checkpointer = Checkpointer(checkpoint_conn)
        writer = threading.Thread(target=self._run, args=(conn, checkpointer),
                                  name="store-writer", daemon=True)
        try:
            writer.start()
        except BaseException:
            conn.close()
            checkpoint_conn.close()
            raise
        self._thread = writer
        self._checkpointer = checkpointer
        try:
            checkpointer.thread.start()
        except RuntimeError:  # the writer checkpoints by itself (`after_commit`)
            log.exception("the store's checkpointer could not start")
            checkpoint_conn.close()

    def _open_writer(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """The writer's connection, and the checkpointer's."""
        if not self.path.exists():  # therapy content: readable by the node's user only
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = connect(self.path, self._synchronous)
        try:
            conn.executescript(SCHEMA + LOG_SCHEMA + SESSION_SCHEMA)
            fold_all(conn)  # what the last run left in the log tables
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT}")
            # the checkpointer's, with the writer's `synchronous`: it fsyncs like SQLite's own
            return conn, connect(self.path, self._synchronous)
        except BaseException:
            conn.close()
            raise

    async def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stopping.set()
            if checkpointer.thread.is_alive():
                await asyncio.to_thread(checkpointer.thread.join)
            self._checkpoints += checkpointer.rounds
        if self._thread is not None:
            with self._marks_lock:
                if self._marks is not None:  # marks held for company: written now
                    self._release(self._marks)
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._readers.shutdown(wait=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    @property
    def checkpoints(self) -> int:
        """Statistics: rounds in which the checkpointer copied the WAL into the database."""
        live = self._checkpointer.rounds if self._checkpointer is not None else 0
        return self._checkpoints + live

    # -- the writer thread --------------------------------------------------------------

    def _run(self, conn: sqlite3.Connection, checkpointer: Checkpointer) -> None:
        state = WriterState(self._published, self._generation_rows)
        last_commit = 0.0
        try:
            while True:
                try:  # with nothing to write, the writer folds what is left to fold
                    first = self._queue.get(timeout=IDLE_FOLD_S if state.busy() else None)
                except queue.Empty:
                    self._commit(conn, state, [], fold=IDLE_FOLD_ROWS)
                    continue
                if first is None:
                    break
                # Commits at most every MIN_COMMIT_INTERVAL_S: what arrives meanwhile joins
                # this batch. Every commit writes each page it touched to the WAL and
                # fsyncs it, so fewer, larger commits cost far less per write.
                wait = last_commit + MIN_COMMIT_INTERVAL_S - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                last_commit = time.monotonic()
                self._commit(conn, state, batch)
                checkpointer.after_commit(conn)
                if stop:
                    break
        finally:
            try:  # everything into `messages`, the log tables empty
                fold_all(conn)
            except sqlite3.Error as exc:  # folded when the store opens next
                log.error("the store could not fold its log on closing: %s",
                          type(exc).__name__)
            self._published.rooms.clear()
            with contextlib.suppress(sqlite3.Error):  # leave a short WAL behind
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _commit(self, conn: sqlite3.Connection, state: WriterState,
                batch: list[_Pending], fold: int | None = None) -> None:
        """Run a batch in one transaction, with a step of folding (`fold` rows, or as
        many as the batch's appends call for). Fast path: no savepoints; if any op fails,
        the batch is rolled back and run again with a savepoint around each op, so the
        failing op fails alone. Ops must be safe to run twice (they only touch the DB)."""
        try:
            results = self._run_batch(conn, state, batch, isolated=False)
            if results is None:
                results = self._run_batch(conn, state, batch, isolated=True)
            assert results is not None
            state.flush(conn)
            if state.due():
                self._fold(conn, state, fold)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store commit failed (%d writes): %s", len(batch), type(exc).__name__)
            state.undo()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = InternalError("the store could not commit")
            results = [(pending, None, failure) for pending in batch]
        else:
            state.committed()  # readers see it before any caller hears of it
            if batch:
                self.commits += 1
                self.ops += len(batch)
        if batch:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_resolve, results)

    @staticmethod
    def _fold(conn: sqlite3.Connection, state: WriterState, rows: int | None) -> None:
        """A step of folding in its own savepoint: if it fails, the batch's writes still
        commit, and the messages wait in the log for the next step."""
        conn.execute("SAVEPOINT fold")
        try:
            state.fold(conn, rows)
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK TO fold")
            log.error("the store could not fold its log: %s", type(exc).__name__)
        conn.execute("RELEASE fold")

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, state: WriterState, batch: list[_Pending],
                   isolated: bool) -> list[tuple[_Pending, Any, BaseException | None]] | None:
        """The batch's results inside an open transaction; None if an op failed and the
        batch was rolled back (only when not `isolated`)."""
        results: list[tuple[_Pending, Any, BaseException | None]] = []
        state.begin()  # before BEGIN: if BEGIN fails, there is nothing of this batch to undo
        conn.execute("BEGIN IMMEDIATE")
        probes = [pending.probe for pending in batch if pending.probe is not None]
        if probes:
            try:
                state.probe(conn, probes)
            except sqlite3.Error:
                if isolated:  # each append checks for itself
                    state.probed.clear()
                else:
                    conn.execute("ROLLBACK")
                    state.undo()
                    return None
        for pending in batch:
            if not isolated:
                try:
                    results.append((pending, pending.op(conn, state), None))
                except Exception:
                    conn.execute("ROLLBACK")
                    state.undo()
                    return None
                continue
            conn.execute("SAVEPOINT op")
            mark = state.mark()
            try:
                value = pending.op(conn, state)
            except Exception as exc:  # the op fails alone
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                state.undo(mark)
                results.append((pending, None, exc))
            else:
                conn.execute("RELEASE op")
                results.append((pending, value, None))
        return results

    def _submit(self, op: Op, future: asyncio.Future[Any] | None = None,
                probe: Probe | None = None) -> asyncio.Future[Any]:
        """Queue `op` for the writer; its future (a new one unless given) resolves after the
        commit. `probe`: the duplicate check `op` will make, looked up with the batch's."""
        if self._thread is None:
            raise InternalError("the store is closed")
        assert self._loop is not None
        if future is None:
            future = self._loop.create_future()
        self._queue.put(_Pending(op, future, probe))
        return future

    async def _write(self, op: Op) -> Any:
        return await self._submit(op)

    # -- reads --------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self._synchronous)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))

    # -- rooms --------------------------------------------------------------------------

    async def create_room(self, room: RoomRecord) -> None:
        def op(conn: sqlite3.Connection, _: WriterState) -> None:
            try:
                conn.execute(
                    "INSERT INTO rooms (room, client, provider, plan, service, messaging,"
                    " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (room.room, room.client, room.provider, room.plan, room.service,
                     int(room.messaging), room.created_ms))
            except sqlite3.IntegrityError:
                raise Conflict(f"room {room.room} exists") from None

        await self._write(op)

    async def get_room(self, room: RoomId) -> RoomRecord | None:
        row = await self._read(lambda c: c.execute(
            "SELECT room, client, provider, plan, service, messaging, created_ms FROM rooms"
            " WHERE room = ?", (room,)).fetchone())
        return _room(row) if row else None

    async def rooms_of(self, user: UserId) -> list[RoomRecord]:
        rows = await self._read(lambda c: c.execute(
            "SELECT room, client, provider, plan, service, messaging, created_ms FROM rooms"
            " WHERE client = ? OR provider = ? ORDER BY created_ms, room",
            (user, user)).fetchall())
        return [_room(r) for r in rows]

    async def set_provider(self, room: RoomId, provider: UserId, now_ms: int) -> RoomRecord:
        def op(conn: sqlite3.Connection, _: WriterState) -> RoomRecord:
            row = conn.execute(
                "SELECT room, client, provider, plan, service, messaging, created_ms FROM rooms"
                " WHERE room = ?", (room,)).fetchone()
            if row is None:
                raise NotFound(f"no room {room}")
            old = _room(row)
            conn.execute("UPDATE rooms SET provider = ? WHERE room = ?", (provider, room))
            conn.execute("INSERT INTO provider_changes VALUES (?, ?, ?, ?)",
                         (room, old.provider, provider, now_ms))
            return RoomRecord(old.room, old.client, provider, old.plan, old.service,
                              old.messaging, old.created_ms)

        return cast(RoomRecord, await self._write(op))

    # -- messages -----------------------------------------------------------------------

    async def append(self, room: RoomId, sender: UserId, cmid: str | int | None,
                     kind: MessageKind, body: str | None, media: MediaId | None,
                     now_ms: int) -> Appended:
        def op(conn: sqlite3.Connection, state: WriterState) -> Appended:
            if cmid is not None:  # this sender already used this cmid here: the first stands
                first = state.find(conn, room, sender, cmid)
                if first is not None:
                    return Appended(first, dup=True)
            return Appended(state.append(conn, room, sender, kind, body, media, now_ms, cmid),
                            dup=False)

        probe = (room, sender, cmid) if cmid is not None else None
        return cast(Appended, await self._submit(op, probe=probe))

    # Reads take a room's unfolded messages (`unfolded`) before they query `messages`:
    # whatever the writer folds meanwhile is then in one or the other (see `sqlite_fold`).

    async def messages_after(self, room: RoomId, after: int, limit: int) -> list[StoredMessage]:
        def fn(c: sqlite3.Connection) -> list[StoredMessage]:
            recent = unfolded(self._published, room)
            found = [message(r) for r in c.execute(
                f"SELECT {MSG_COLUMNS} FROM messages WHERE room = ? AND seq > ?"
                " ORDER BY seq LIMIT ?", (room, after, limit))]
            last = found[-1].seq if found else after
            for m in recent:
                if len(found) >= limit:
                    break
                if m.seq > last:
                    found.append(m)
            return found

        return await self._read(fn)

    async def messages_before(self, room: RoomId, before: int | None,
                              limit: int) -> list[StoredMessage]:
        bound = before if before is not None else 2**62

        def fn(c: sqlite3.Connection) -> list[StoredMessage]:
            recent = [m for m in unfolded(self._published, room) if m.seq < bound][-limit:]
            if len(recent) >= limit:
                return recent
            below = recent[0].seq if recent else bound
            older = [message(r) for r in c.execute(
                f"SELECT {MSG_COLUMNS} FROM messages WHERE room = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (room, below, limit - len(recent)))]
            older.reverse()
            return older + recent

        return await self._read(fn) if limit > 0 else []

    def _head(self, c: sqlite3.Connection, room: str) -> int:
        """On a reader: the room's head."""
        recent = unfolded(self._published, room)
        folded = c.execute("SELECT MAX(seq) FROM messages WHERE room = ?", (room,)).fetchone()
        return max(int(folded[0] or 0), recent[-1].seq if recent else 0)

    async def head(self, room: RoomId) -> int:
        return await self._read(lambda c: self._head(c, room))

    async def heads(self, rooms: list[RoomId]) -> dict[RoomId, int]:
        def fn(conn: sqlite3.Connection) -> dict[RoomId, int]:
            return {room: self._head(conn, room) for room in rooms}

        return await self._read(fn) if rooms else {}

    async def head_and_reads(self, room: RoomId) -> tuple[int, dict[UserId, int]]:
        def fn(c: sqlite3.Connection) -> tuple[int, dict[UserId, int]]:
            head = self._head(c, room)
            reads = c.execute("SELECT user, seq FROM reads WHERE room = ?", (room,)).fetchall()
            return head, {UserId(u): s for u, s in reads}

        return await self._read(fn)

    async def rooms_with_heads(self, user: UserId) -> list[tuple[RoomRecord, int]]:
        def fn(c: sqlite3.Connection) -> list[tuple[RoomRecord, int]]:
            rows = c.execute(
                "SELECT room, client, provider, plan, service, messaging, created_ms FROM rooms"
                " WHERE client = ? OR provider = ? ORDER BY created_ms, room",
                (user, user)).fetchall()
            return [(_room(r), self._head(c, r[0])) for r in rows]

        return await self._read(fn)

    async def set_read(self, room: RoomId, user: UserId, seq: int) -> int:
        """Read marks given while the writer is busy share one op (see `_ReadMarks`)."""
        key = (room, user)
        marks = self._mark(key, seq, hold=False)
        # shielded: the future is shared, a cancelled caller must not cancel the others
        stored = await asyncio.shield(marks.future)
        return cast(int, stored[key])

    def read_later(self, room: RoomId, user: UserId, seq: int,
                   then: Callable[[int | None], None]) -> None:
        """Like `set_read`, without waiting: the mark may wait READ_MARK_DELAY_S for others
        to share its commit; `then(stored)` runs on the loop once it is written (`None`
        if the write failed)."""
        key = (room, user)
        self._mark(key, seq, hold=True).then.append((key, then))

    def _mark(self, key: tuple[RoomId, UserId], seq: int, hold: bool) -> _ReadMarks:
        """The batch `key`'s mark joined: the open one, or a new one."""
        if self._thread is None:
            raise InternalError("the store is closed")
        assert self._loop is not None
        with self._marks_lock:
            marks = self._marks
            # done without being taken: its batch failed before it ran (a failed BEGIN)
            if marks is None or marks.future.done():
                marks = _ReadMarks(self._close_marks, self._loop.create_future())
                marks.future.add_done_callback(marks.done)
                self._marks = marks
                if hold:
                    marks.held = self._loop.call_later(READ_MARK_DELAY_S, self._release, marks)
                else:
                    self._submit(marks.op, marks.future)
            elif not hold and marks.held is not None:
                self._release(marks)
            marks.given[key] = max(marks.given.get(key, 0), seq)
        return marks

    def _release(self, marks: _ReadMarks) -> None:
        """A held batch goes to the writer."""
        if marks.held is not None:
            marks.held.cancel()
            marks.held = None
            self._submit(marks.op, marks.future)

    def _close_marks(self, marks: _ReadMarks) -> None:
        with self._marks_lock:
            if self._marks is marks:
                self._marks = None

    async def reads(self, room: RoomId) -> dict[UserId, int]:
        rows = await self._read(lambda c: c.execute(
            "SELECT user, seq FROM reads WHERE room = ?", (room,)).fetchall())
        return {UserId(u): s for u, s in rows}


def _resolve(results: list[tuple[_Pending, Any, BaseException | None]]) -> None:
    for pending, value, exc in results:
        if pending.future.done():
            continue
        if exc is not None:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(value)
