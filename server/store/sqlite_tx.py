"""The session-rule transaction (`Tx`) of the embedded store, on one SQLite connection.

Provider time is held in five-minute blocks, one row each, under a primary key of
(provider, block): two sessions can never hold the same block, whatever node books them,
because the database refuses the second row. Bookings start on a five-minute mark and
last a whole number of blocks, so the blocks are exactly the time held.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from server.errors import Conflict
from server.ids import MessageKind, RoomId, UserId
from server.store.base import Doc, JobRow, RoomRecord, StoredMessage
from server.store.sqlite_fold import Published, WriterState, unfolded

BLOCK_MS = 5 * 60 * 1000

SESSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    room TEXT,
    owner TEXT,
    state TEXT NOT NULL,
    final INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_room ON docs (kind, room);
CREATE INDEX IF NOT EXISTS docs_owner ON docs (kind, owner, final);
CREATE TABLE IF NOT EXISTS ledger (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_room ON ledger (room, n);
CREATE TABLE IF NOT EXISTS charges (
    key TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_pending ON charges (next_try_ms) WHERE delivered_ms IS NULL;
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    due_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due_ms);
CREATE TABLE IF NOT EXISTS time_claims (
    owner TEXT NOT NULL,
    block INTEGER NOT NULL,
    holder TEXT NOT NULL,
    PRIMARY KEY (owner, block)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS time_claims_holder ON time_claims (holder);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _doc(row: tuple[Any, ...]) -> Doc:
    return Doc(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])


class SQLiteTx:
    """`Tx` over a connection inside a transaction: the writer's (with its `state`), or a
    reader's, which sees the unfolded messages as `published` (`looked` says whether it
    did), or as `taken` before the transaction began."""

    def __init__(self, conn: sqlite3.Connection, state: WriterState | None,
                 published: Published | None = None,
                 taken: dict[str, list[StoredMessage]] | None = None) -> None:
        self.conn = conn
        self.state = state
        self.published = published
        self.taken = taken
        self.looked = False

    def _unfolded(self, room: str) -> list[StoredMessage]:
        if self.state is not None:
            return self.state.rows(room)
        if self.taken is not None:
            return self.taken.get(room, [])
        assert self.published is not None
        self.looked = True
        return unfolded(self.published, room)

    def room(self, room: RoomId) -> RoomRecord | None:
        from server.store.sqlite import _room

        row = self.conn.execute(
            "SELECT room, client, provider, plan, service, messaging, created_ms FROM rooms"
            " WHERE room = ?", (room,)).fetchone()
        return _room(row) if row else None

    def get_doc(self, kind: str, id: str) -> Doc | None:
        row = self.conn.execute(
            "SELECT kind, id, room, owner, state, final, body FROM docs WHERE kind = ? AND id = ?",
            (kind, id)).fetchone()
        return _doc(row) if row else None

    def put_doc(self, doc: Doc) -> None:
        self.conn.execute(
            "INSERT INTO docs (kind, id, room, owner, state, final, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET"
            " room = excluded.room, owner = excluded.owner, state = excluded.state,"
            " final = excluded.final, body = excluded.body",
            (doc.kind, doc.id, doc.room, doc.owner, doc.state, int(doc.final), doc.body))

    def docs(self, kind: str, *, room: str | None = None, owner: str | None = None,
             active: bool = False) -> list[Doc]:
        sql = "SELECT kind, id, room, owner, state, final, body FROM docs WHERE kind = ?"
        args: list[Any] = [kind]
        if room is not None:
            sql += " AND room = ?"
            args.append(room)
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        if active:
            sql += " AND final = 0"
        return [_doc(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def ledger(self, room: RoomId) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT body FROM ledger WHERE room = ? ORDER BY n", (room,))]

    def post(self, room: RoomId, entries: list[str]) -> None:
        self.conn.executemany("INSERT INTO ledger (room, body) VALUES (?, ?)",
                              [(room, e) for e in entries])

    def add_charge(self, key: str, room: RoomId, body: str, now_ms: int) -> bool:
        cur = self.conn.execute(
            "INSERT INTO charges (key, room, body, created_ms, next_try_ms) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING", (key, room, body, now_ms, now_ms))
        return cur.rowcount == 1

    def charges(self, room: RoomId) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT body FROM charges WHERE room = ? ORDER BY created_ms, key", (room,))]

    def claim_time(self, owner: str, holder: str, start_ms: int, end_ms: int) -> None:
        first, last = start_ms // BLOCK_MS, -(-end_ms // BLOCK_MS)
        try:
            self.conn.executemany(
                "INSERT INTO time_claims (owner, block, holder) VALUES (?, ?, ?)",
                [(owner, block, holder) for block in range(first, last)])
        except sqlite3.IntegrityError:
            raise Conflict("that time is already booked with this provider (R7)") from None

    def release_time(self, holder: str) -> None:
        self.conn.execute("DELETE FROM time_claims WHERE holder = ?", (holder,))

    def schedule(self, job: JobRow) -> None:
        self.conn.execute(
            "INSERT INTO jobs (key, due_ms, kind, subject) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING", (job.key, job.due_ms, job.kind, job.subject))

    def cancel(self, key: str) -> None:
        self.conn.execute("DELETE FROM jobs WHERE key = ?", (key,))

    def take_job(self, key: str) -> bool:
        return self.conn.execute("DELETE FROM jobs WHERE key = ?", (key,)).rowcount == 1

    def append(self, room: RoomId, sender: UserId, kind: MessageKind, body: str | None,
               now_ms: int, meta: str | None = None) -> StoredMessage:
        assert self.state is not None, "append needs the writer's transaction"
        return self.state.append(self.conn, room, sender, kind, body, None, now_ms, meta=meta)

    def unanswered_since(self, room: RoomId, client: UserId, provider: UserId) -> int | None:
        recent = self._unfolded(room)
        since: int | None = None  # the earliest client message after the provider's last
        for m in reversed(recent):
            if m.sender == provider:
                return since
            if m.sender == client:
                since = m.ts_ms if since is None else min(since, m.ts_ms)
        # No answer among them: the folded messages after the provider's last count too.
        row = self.conn.execute(
            "SELECT MIN(ts_ms) FROM messages WHERE room = ? AND sender = ? AND seq > COALESCE("
            "(SELECT MAX(seq) FROM messages WHERE room = ? AND sender = ?), 0)",
            (room, client, room, provider)).fetchone()
        if row[0] is None:
            return since
        return int(row[0]) if since is None else min(since, int(row[0]))

    def setting(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def put_setting(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)"
                          " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
