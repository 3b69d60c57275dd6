"""Where the embedded store puts a new message: an append log, folded into `messages` later.

Why: `messages` is ordered by (room, seq), so a commit of twenty messages in twenty rooms
dirties twenty scattered leaf pages, and as many of the cmid index. Every commit writes
each page it dirtied to the WAL, so at 2,500 busy rooms a message cost about three 4-KiB
pages. A new message is instead appended to a log table without indexes (`recent0` or
`recent1`), where a commit's messages share one or two pages. The log is folded into
`messages` room by room once a room has gathered several messages, so each of its pages
is written once for all of them.

Theory of operation:
- Two log tables take turns. Messages go to the *live* one. Once it holds GENERATION_ROWS
  rows and the other is empty, they swap: the full one becomes the *old* one and its
  rooms are folded a few at a time, at least twice as fast as messages arrive, each in
  the commit of the writes it follows (or on its own when no writes come). When the
  last is folded, the old table is emptied with one DELETE (cheap: no per-row work).
- The writer keeps every message not yet folded in memory (`Unfolded`, one per room), in
  seq order: it gives the room's head and answers a repeated cmid without a query. A
  transaction's new messages reach the live table at its end (`flush`), and a fold's
  rows reach `messages`, many rows to one INSERT (`insert_rows`).
- Readers see a message only once it is committed: after each commit the writer
  *publishes* each room it touched (`Unfolded.view`, replaced whole). A reader takes a
  room's view first and queries `messages` after, so a message is either in the view or
  already folded when the query runs; one in both is counted once, by seq.
- A write that fails is undone in memory as in the database: the writer keeps a journal
  of what it changed since BEGIN (appends, folds, a swap) and plays it back to the
  savepoint or to BEGIN.
- Opening the store folds everything the logs hold (a crash may leave a room both folded
  and still in its log: its (room, seq) is already in `messages`, and the row is skipped);
  a clean close folds everything too, so a closed store's messages are all in `messages`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from server.ids import MediaId, MessageKind, RoomId, UserId
from server.store.base import StoredMessage

# A log table holds this many rows before the other takes over. At 2,500 busy rooms that
# is about six messages a room, folded with one write of the room's pages.
GENERATION_ROWS = 16384
# While a generation is folding, each commit folds at least this many rows, and at least
# twice as many as it appended, so the old table is empty long before the live one fills;
# but not more than FOLD_MAX_ROWS (whole rooms, so one room's may go over), so that a large
# batch after a slow disk does not wait for a large fold too.
FOLD_MIN_ROWS = 64
FOLD_MAX_ROWS = 512
# When no writes come for this long, the writer folds what is left of the old generation.
IDLE_FOLD_S = 0.25
IDLE_FOLD_ROWS = 2048

MSG_COLUMNS = "room, seq, sender, kind, body, media, ts_ms, cmid, meta"

# A stored message's columns: of `messages` (with its keys) and of the log tables alike.
MESSAGE_FIELDS = """
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    cmid,
    kind TEXT NOT NULL,
    body TEXT,
    media TEXT,
    ts_ms INTEGER NOT NULL,
    meta TEXT"""

LOG_SCHEMA = "".join(f"""
CREATE TABLE IF NOT EXISTS recent{n} ({MESSAGE_FIELDS}
);""" for n in (0, 1))

_INSERT_MAX_ROWS = 256  # rows in one INSERT statement (9 parameters each)


@functools.cache
def _insert_sql(table: str, rows: int) -> str:
    return (f"INSERT INTO {table} ({MSG_COLUMNS}) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows))


def insert_rows(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert message rows (`_log_row`) in order, many to a statement: one statement runs
    in one call into SQLite, which the writer makes without the GIL, and every call is a
    chance for the event loop's thread to keep the GIL from the writer for a while. The
    statements hold a power of two of rows, so that few texts are prepared and cached."""
    for count, values in row_chunks(rows, _INSERT_MAX_ROWS):
        conn.execute(_insert_sql(table, count), values)


def row_chunks(rows: Sequence[tuple[Any, ...]], largest: int
               ) -> Iterator[tuple[int, list[Any]]]:
    """`rows` in order, as (count, the values of `count` rows one after another) for
    statements of many rows: each count a power of two and at most `largest` (a power of
    two), so that few statement texts serve any number of rows."""
    done = 0
    total = len(rows)
    while done < total:
        count = min(largest, 1 << ((total - done).bit_length() - 1))
        yield count, [value for row in rows[done:done + count] for value in row]
        done += count


# The duplicate check of a batch's appends: one statement looks up many (room, sender,
# cmid) keys, joined against the cmid index (a row-value IN list would scan the index).
_PROBE_MAX_KEYS = 256
_M_COLUMNS = ", ".join("m." + column.strip() for column in MSG_COLUMNS.split(","))

Probe = tuple[str, str, str | int]  # (room, sender, cmid) of an append with a cmid


@functools.cache
def _probe_sql(keys: int) -> str:
    return (f"SELECT {_M_COLUMNS} FROM (VALUES " + ", ".join(["(?, ?, ?)"] * keys)
            + ") AS p CROSS JOIN messages AS m"
            " ON m.room = p.column1 AND m.sender = p.column2 AND m.cmid = p.column3")


_EMPTY: list[StoredMessage] = []
View = tuple[list[StoredMessage], int, int]  # a room's list, and the committed slice of it
_NO_VIEW: View = (_EMPTY, 0, 0)


def message(row: tuple[Any, ...]) -> StoredMessage:
    """A `messages` row selected as MSG_COLUMNS."""
    return StoredMessage(RoomId(row[0]), row[1], UserId(row[2]), row[3], row[4],
                         MediaId(row[5]) if row[5] is not None else None, row[6], row[7], row[8])


def _log_row(m: StoredMessage) -> tuple[Any, ...]:
    """`m` as a row of MSG_COLUMNS (the inverse of `message`)."""
    return (m.room, m.seq, m.sender, m.kind, m.body, m.media, m.ts_ms, m.cmid, m.meta)


class Unfolded:
    """One room's messages not yet folded into `messages`.

    `rows[lo:]` are the writer's (committed or not), in seq order; `rows[lo:old_end]` are
    in the old log table. `view` is what readers see: (list, lo, hi) as of the last commit.
    The writer only appends to a published list or shortens it past the published `hi`;
    dropping folded rows from its front makes a new list, so a view never changes.
    """

    __slots__ = ("cmids", "lo", "old_end", "rows", "view")

    def __init__(self) -> None:
        self.rows: list[StoredMessage] = []
        self.lo = 0
        self.old_end = 0
        self.cmids: dict[tuple[str, str | int], StoredMessage] = {}
        self.view: View = _NO_VIEW


class Published:
    """What readers see: each room's unfolded messages as of the last commit (`rooms`,
    written by the writer only), and how many commits have folded messages (`folds`).

    A reader takes a room's view before its query. A transaction that reads several
    rooms cannot take them all first at no cost, so it takes each when needed and checks
    afterwards that no fold was committed meanwhile (`SQLiteStore.view`)."""

    __slots__ = ("folds", "rooms")

    def __init__(self) -> None:
        self.rooms: dict[str, Unfolded] = {}
        self.folds = 0


def unfolded(published: Published, room: str) -> list[StoredMessage]:
    """Readers: the room's committed messages not yet folded (take it before the query)."""
    entry = published.rooms.get(room)
    if entry is None:
        return _EMPTY
    rows, lo, hi = entry.view
    return rows[lo:hi]


def views(published: Published) -> dict[str, list[StoredMessage]]:
    """Readers: every room's committed unfolded messages, taken at once."""
    return {room: entry.view[0][entry.view[1]:entry.view[2]]
            for room, entry in list(published.rooms.items())}


class WriterState:
    """What the writer thread knows between and during its transactions."""

    def __init__(self, published: Published, generation_rows: int = GENERATION_ROWS) -> None:
        self.generation_rows = generation_rows
        self.fold_min = min(FOLD_MIN_ROWS, max(1, generation_rows // 8))
        self.heads: dict[str, int] = {}  # rooms' heads, read from `messages` on first use
        self.published = published
        self.pending = published.rooms  # readers read each entry's `view` only
        self.live = 0  # the log table new messages go to
        self.live_rows = 0
        self.live_rooms: dict[str, None] = {}  # rooms with rows in the live table
        self.old_rooms: list[str] = []  # the old generation's rooms, in key order
        self.old_next = 0  # the next of them to fold
        self.old_full = False  # the old table still has rows (folded or not)
        self.journal: list[tuple[Any, ...]] = []  # undo, since BEGIN
        self.touched: dict[str, Unfolded] = {}  # rooms to publish at COMMIT
        self.appended = 0  # rows appended since BEGIN
        # The batch's duplicate checks answered from `messages` at once (`probe`): each
        # key probed, with its stored message or None.
        self.probed: dict[Probe, StoredMessage | None] = {}
        self.folded = False  # whether rows were folded since BEGIN
        self._saved: tuple[Any, ...] | None = None  # the counters at BEGIN

    # -- inside a transaction -----------------------------------------------------------

    def head(self, conn: sqlite3.Connection, room: str) -> int:
        entry = self.pending.get(room)
        if entry is not None and len(entry.rows) > entry.lo:
            return entry.rows[-1].seq
        head = self.heads.get(room)
        if head is None:
            row = conn.execute("SELECT MAX(seq) FROM messages WHERE room = ?", (room,)).fetchone()
            head = row[0] or 0
            self.heads[room] = head
        return head

    def probe(self, conn: sqlite3.Connection, keys: list[Probe]) -> None:
        """Right after BEGIN: look up in `messages`, a few statements for the whole batch,
        the keys its appends will check (`find`, which asks memory first). One statement
        per append cost the writer about 3 µs each; in one statement, about 0.6 µs.
        Only this writer adds to `messages`, by folding after a batch's ops, so the
        answers hold for the whole batch."""
        probed = self.probed
        probed.update(dict.fromkeys(keys))  # each key once, None until a row is found
        for count, values in row_chunks(list(probed), _PROBE_MAX_KEYS):
            for row in conn.execute(_probe_sql(count), values):
                found = message(row)
                assert found.cmid is not None  # joined on it
                probed[found.room, found.sender, found.cmid] = found

    def find(self, conn: sqlite3.Connection, room: str, sender: str,
             cmid: str | int) -> StoredMessage | None:
        """The message `sender` sent here under `cmid`, if any."""
        entry = self.pending.get(room)
        if entry is not None:
            hit = entry.cmids.get((sender, cmid))
            if hit is not None:
                return hit
        key = (room, sender, cmid)
        if key in self.probed:
            return self.probed[key]
        row = conn.execute(f"SELECT {MSG_COLUMNS} FROM messages WHERE room = ? AND sender = ?"
                           " AND cmid = ?", (room, sender, cmid)).fetchone()
        return message(row) if row is not None else None

    def append(self, conn: sqlite3.Connection, room: str, sender: str, kind: MessageKind,
               body: str | None, media: MediaId | None, ts_ms: int,
               cmid: str | int | None = None, meta: str | None = None) -> StoredMessage:
        """A new message, the room's next `seq`: in memory now, in the live log table at
        the end of the transaction (`flush`)."""
        m = StoredMessage(RoomId(room), self.head(conn, room) + 1, UserId(sender), kind, body,
                          media, ts_ms, cmid, meta)
        entry = self.pending.get(m.room)
        if entry is None:
            entry = self.pending[m.room] = Unfolded()
        entry.rows.append(m)
        if m.cmid is not None:
            entry.cmids[m.sender, m.cmid] = m
        self.journal.append(("append", entry, m))
        self.touched[m.room] = entry
        self.live_rooms[m.room] = None
        self.live_rows += 1
        self.appended += 1
        self.heads[m.room] = m.seq
        return m

    def flush(self, conn: sqlite3.Connection) -> None:
        """Before COMMIT: the transaction's appends (those not undone) into the live log
        table, in a few statements."""
        rows = [_log_row(step[2]) for step in self.journal if step[0] == "append"]
        if rows:
            insert_rows(conn, f"recent{self.live}", rows)

    def rows(self, room: str) -> list[StoredMessage]:
        """The room's unfolded messages, as this transaction sees them."""
        entry = self.pending.get(room)
        return entry.rows[entry.lo:] if entry is not None else _EMPTY

    # -- the transaction's edges --------------------------------------------------------

    def begin(self) -> None:
        self._saved = self._counters()
        self.appended = 0
        self.probed.clear()
        self.folded = False

    def _counters(self) -> tuple[Any, ...]:
        return (self.live, self.live_rows, self.live_rooms, self.old_rooms, self.old_next,
                self.old_full)

    def _restore(self, counters: tuple[Any, ...]) -> None:
        (self.live, self.live_rows, self.live_rooms, self.old_rooms, self.old_next,
         self.old_full) = counters

    def mark(self) -> int:
        return len(self.journal)

    def undo(self, mark: int = 0) -> None:
        """Forget what was done since `mark` (0: since BEGIN), in memory as the database
        forgets it when it rolls back to the savepoint taken at `mark`, or to BEGIN."""
        while len(self.journal) > mark:
            step = self.journal.pop()
            if step[0] == "append":
                _, entry, m = step
                entry.rows.pop()
                if m.cmid is not None:
                    entry.cmids.pop((m.sender, m.cmid), None)
                self.live_rows -= 1
                self.appended -= 1
            elif step[0] == "fold":
                _, entry, lo, old_end = step
                for m in entry.rows[lo:old_end]:
                    if m.cmid is not None:
                        entry.cmids[m.sender, m.cmid] = m
                entry.lo = lo
            else:  # "swap"
                _, entry, old_end = step
                entry.old_end = old_end
        if mark == 0 and self._saved is not None:
            self._restore(self._saved)
            self._saved = None
        self.heads.clear()

    def committed(self) -> None:
        """After COMMIT: readers see the rooms written; folded rows leave memory."""
        if self.folded:
            self.published.folds += 1
        for room, entry in self.touched.items():
            rows, lo = entry.rows, entry.lo
            if lo == len(rows):  # all folded: readers find none, the writer starts afresh
                entry.view = _NO_VIEW
                del self.pending[room]
                continue
            if lo >= 64 and lo * 2 >= len(rows):  # a new list; readers keep the old one
                entry.rows = rows = rows[lo:]
                entry.old_end = max(entry.old_end - lo, 0)
                entry.lo = lo = 0
            entry.view = (rows, lo, len(rows))
        self.touched.clear()
        self.journal.clear()
        self._saved = None

    # -- folding ------------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether folding has work to do when no writes come."""
        return self.old_full

    def due(self) -> bool:
        """Whether a step of folding has anything to do now."""
        return self.old_full or self.live_rows >= self.generation_rows

    def fold(self, conn: sqlite3.Connection, budget: int | None = None) -> None:
        """One step of folding, inside the transaction: fold rooms of the old generation,
        or empty the old table once they are all folded, or swap the tables once the live
        one is full. If it fails, memory is as before it (the caller rolls the database
        back to a savepoint taken before it)."""
        mark, counters = self.mark(), self._counters()
        try:
            self._fold(conn, budget)
        except BaseException:
            self.undo(mark)
            self._restore(counters)
            raise

    def _fold(self, conn: sqlite3.Connection, budget: int | None) -> None:
        if self.old_next < len(self.old_rooms):
            todo = budget or max(self.fold_min, min(2 * self.appended, FOLD_MAX_ROWS))
            rows: list[tuple[Any, ...]] = []
            while len(rows) < todo and self.old_next < len(self.old_rooms):
                room = self.old_rooms[self.old_next]
                self.old_next += 1
                entry = self.pending.get(room)
                if entry is None or entry.old_end <= entry.lo:
                    continue
                segment = entry.rows[entry.lo:entry.old_end]
                self.journal.append(("fold", entry, entry.lo, entry.old_end))
                for m in segment:
                    if m.cmid is not None:
                        entry.cmids.pop((m.sender, m.cmid), None)
                    rows.append(_log_row(m))
                entry.lo = entry.old_end
                self.touched[room] = entry
                self.folded = True
            insert_rows(conn, "messages", rows)
        elif self.old_full:
            conn.execute(f"DELETE FROM recent{1 - self.live}")
            self.old_full = False
        elif self.live_rows >= self.generation_rows:
            self._swap()

    def _swap(self) -> None:
        """The live table becomes the old one (the old is empty); the other takes over."""
        rooms = sorted(self.live_rooms)  # in key order: neighbours share index pages
        for room in rooms:
            entry = self.pending.get(room)
            if entry is not None:
                self.journal.append(("swap", entry, entry.old_end))
                entry.old_end = len(entry.rows)
        self.old_rooms, self.old_next = rooms, 0
        self.old_full = True
        self.live = 1 - self.live
        self.live_rows = 0
        self.live_rooms = {}


def fold_all(conn: sqlite3.Connection) -> int:
    """Outside the writer's life (opening, closing): fold both log tables whole, in one
    transaction. A row already folded (a crash between its fold and the DELETE) is
    skipped. Returns the rows folded."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            f"INSERT OR IGNORE INTO messages ({MSG_COLUMNS})"
            f" SELECT {MSG_COLUMNS} FROM recent0 UNION ALL SELECT {MSG_COLUMNS} FROM recent1"
            " ORDER BY 1, 2")
        folded = cur.rowcount
        conn.execute("DELETE FROM recent0")
        conn.execute("DELETE FROM recent1")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return folded
