"""The embedded store's append log (`server.store.sqlite_fold`): new messages go to a log
table and are folded into `messages` later. Whatever the fold is doing, a reader sees
every committed message once and in order, a repeated cmid finds its first message, a
failed write leaves nothing behind in memory or on disk, and a crash loses nothing."""

from __future__ import annotations

import asyncio
import functools
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from server.errors import InternalError
from server.ids import RoomId, UserId
from server.store import RoomRecord, sqlite_fold
from server.store import sqlite as sqlite_store
from server.store.base import StoredMessage, Tx
from server.store.sqlite import SQLiteStore
from server.store.sqlite_fold import WriterState

C = UserId("c")
P = UserId("p")


async def _open(path: Path, rooms: int, generation_rows: int = 8) -> tuple[SQLiteStore,
                                                                            list[RoomId]]:
    store = SQLiteStore(path, generation_rows=generation_rows)
    await store.open()
    names = [RoomId(f"r{i:02}") for i in range(rooms)]
    for room in names:
        await store.create_room(RoomRecord(room, C, P, "self_pay", "therapy", True, 0))
    return store, names


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


async def _state(store: SQLiteStore) -> dict[str, Any]:
    """What the writer knows about folding, read inside one of its transactions."""
    def op(_: sqlite3.Connection, state: WriterState) -> dict[str, Any]:
        return {"old_full": state.old_full, "old_left": len(state.old_rooms) - state.old_next,
                "live": state.live, "live_rows": state.live_rows,
                "unfolded": sum(len(e.rows) - e.lo for e in state.pending.values())}
    return await store._write(op)  # type: ignore[no-any-return]


def _gapless(messages: list[StoredMessage], first: int) -> bool:
    return [m.seq for m in messages] == list(range(first, first + len(messages)))


async def test_readers_see_every_committed_message_once_and_in_order_while_it_folds(
        tmp_path: Path) -> None:
    """Writers append to 12 rooms with generations of 8 rows (a fold every few commits)
    while readers page forward, page back and ask for heads: every answer is gapless and
    holds at least what was acknowledged before the read began."""
    store, rooms = await _open(tmp_path / "c.db", 12)
    acked = dict.fromkeys(rooms, 0)
    stop = asyncio.Event()
    reads = 0

    async def writer(i: int) -> None:
        for n in range(120):
            room = rooms[(i * 7 + n) % len(rooms)]
            appended = await store.append(room, C, f"w{i}-{n}", "text", "x", None, n)
            acked[room] = max(acked[room], appended.message.seq)

    async def reader(i: int) -> None:
        nonlocal reads
        while not stop.is_set():
            room = rooms[(i + reads) % len(rooms)]
            floor = acked[room]
            after = await store.messages_after(room, 0, 10**6)
            assert _gapless(after, 1) and len(after) >= floor, (room, floor, after[-3:])
            before = await store.messages_before(room, None, 7)
            assert _gapless(before, before[0].seq if before else 1)
            assert not before or before[-1].seq >= floor
            assert await store.head(room) >= floor
            middle = await store.messages_after(room, floor // 2, 5)
            assert _gapless(middle, floor // 2 + 1) and len(middle) >= min(5, floor - floor // 2)
            reads += 1

    readers = [asyncio.create_task(reader(i)) for i in range(4)]
    await asyncio.gather(*(writer(i) for i in range(8)))
    stop.set()
    await asyncio.gather(*readers)
    assert reads > 50
    heads = await store.heads(rooms)
    assert sum(heads.values()) == 8 * 120
    for room in rooms:  # paging back from the head visits everything once
        seen: list[int] = []
        bound: int | None = None
        while page := await store.messages_before(room, bound, 3):
            seen[:0] = [m.seq for m in page]
            bound = page[0].seq
        assert seen == list(range(1, heads[room] + 1))
    await store.close()
    assert _count(tmp_path / "c.db", "messages") == 8 * 120
    assert _count(tmp_path / "c.db", "recent0") + _count(tmp_path / "c.db", "recent1") == 0


async def test_a_repeated_cmid_finds_its_first_message_before_and_after_the_fold(
        tmp_path: Path) -> None:
    store, rooms = await _open(tmp_path / "c.db", 3)
    first = {}
    for n in range(60):
        first[n] = (await store.append(rooms[n % 3], C, f"m{n}", "text", "a", None, n)).message
    # some are folded by now, some wait in the log: every repeat is a dup of the first
    state = await _state(store)
    assert 0 < state["unfolded"] < 60, state
    for n in range(60):
        again = await store.append(rooms[n % 3], C, f"m{n}", "text", "b", None, 999)
        assert again.dup and again.message == first[n]
    await store.close()
    store = SQLiteStore(tmp_path / "c.db", generation_rows=8)
    await store.open()  # everything folded now
    for n in range(60):
        again = await store.append(rooms[n % 3], C, f"m{n}", "text", "b", None, 999)
        assert again.dup and again.message == first[n]
    assert sum((await store.heads(rooms)).values()) == 60
    await store.close()


async def test_a_batch_checks_its_cmids_together_and_finds_every_first_message(
        tmp_path: Path) -> None:
    """The appends of one batch look up their cmids in `messages` with one statement
    (`WriterState.probe`) instead of one each; repeats still find their first message,
    whether folded, waiting in the log or stored earlier in the same batch, and the
    cmid 5 is not the cmid "5"."""
    store, rooms = await _open(tmp_path / "c.db", 3)
    first = {}
    for n in range(60):  # integer and text cmids; some folded, some still in the log
        cmid: str | int = n if n % 2 else f"m{n}"
        first[n] = (await store.append(rooms[n % 3], C, cmid, "text", "a", None, n)).message
    assert 0 < (await _state(store))["unfolded"] < 60
    statements: list[str] = []

    def trace(conn: sqlite3.Connection, _: WriterState) -> None:
        conn.set_trace_callback(statements.append)

    await store._write(trace)
    repeats = [store.append(rooms[n % 3], C, n if n % 2 else f"m{n}", "text", "b", None, 999)
               for n in range(60)]
    fresh = [store.append(rooms[0], C, "new", "text", "c", None, 999),
             store.append(rooms[0], C, "new", "text", "d", None, 999),  # same batch, or not
             *(store.append(rooms[n % 3], C, str(n), "text", "e", None, 999) for n in (1, 3))]
    results = await asyncio.gather(*repeats, *fresh)
    await store._write(lambda conn, _: conn.set_trace_callback(None))
    for n, again in enumerate(results[:60]):
        assert again.dup and again.message == first[n]
    new, new_again, *texts = results[60:]
    assert not new.dup and new_again.dup and new_again.message == new.message
    assert [t.dup for t in texts] == [False, False]  # "1" and "3" are not 1 and 3
    single = [s for s in statements if "AND cmid = ?" in s]
    batched = [s for s in statements if "CROSS JOIN messages" in s]
    assert single == [] and 1 <= len(batched) < len(results)
    assert sum((await store.heads(rooms)).values()) == 63
    await store.close()


async def test_when_writes_stop_the_writer_folds_the_rest_of_the_old_generation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "IDLE_FOLD_S", 0.05)
    store, rooms = await _open(tmp_path / "c.db", 20, generation_rows=40)
    for n in range(45):  # one generation of 40 swapped out, its 20 rooms barely folded
        await store.append(rooms[n % 20], C, None, "text", "x", None, n)
    for _ in range(100):
        state = await _state(store)
        if not state["old_full"]:
            break
        await asyncio.sleep(0.05)
    assert not state["old_full"] and state["old_left"] == 0, state
    assert state["unfolded"] == state["live_rows"] < 40
    assert _count(tmp_path / "c.db", f"recent{1 - state['live']}") == 0
    await store.close()


async def test_a_failed_op_leaves_no_message_behind_in_memory(tmp_path: Path) -> None:
    """A session transaction that appended a system message and then failed is rolled
    back: the message is not read, not counted in the head, and its seq is reused."""
    store, rooms = await _open(tmp_path / "c.db", 1)
    room = rooms[0]
    await store.append(room, C, "m1", "text", "a", None, 1)

    def failing(tx: Tx) -> None:
        tx.append(room, P, "system", None, 2, '{"kind": "x"}')
        raise ValueError("refused after appending")

    with pytest.raises(ValueError):
        await store.transact(failing)
    assert await store.head(room) == 1
    assert [m.seq for m in await store.messages_after(room, 0, 10)] == [1]
    second = await store.append(room, C, "m2", "text", "b", None, 3)
    assert second.message.seq == 2 and not second.dup
    await store.close()


async def test_a_failed_commit_forgets_the_whole_batch_in_memory_too(tmp_path: Path) -> None:
    """A commit that fails (here on a deferred foreign key, checked at COMMIT) fails every
    write of its batch: none of their messages is read afterwards, the heads are as
    before, and the cmid of each can be sent again as a new message."""
    store, rooms = await _open(tmp_path / "c.db", 2)
    await store._write(lambda conn, _: conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
    await store._write(lambda conn, _: conn.execute(
        "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"))
    await store.append(rooms[0], C, "kept", "text", "a", None, 1)
    release = threading.Event()
    blocker = store._submit(lambda *_: release.wait(10))  # the writer waits in it, so ...
    await asyncio.sleep(0.05)
    appends = [asyncio.ensure_future(store.append(rooms[i % 2], C, f"lost{i}", "text", "b",
                                                  None, 2)) for i in range(6)]
    await asyncio.sleep(0.05)
    bad = store._submit(lambda conn, _: conn.execute("INSERT INTO child VALUES (42)"))
    release.set()  # ... these all go in the next batch
    await blocker
    results = await asyncio.gather(*appends, bad, return_exceptions=True)
    assert all(isinstance(r, InternalError) for r in results), results
    assert await store.heads(rooms) == {rooms[0]: 1, rooms[1]: 0}
    assert [m.cmid for m in await store.messages_after(rooms[0], 0, 10)] == ["kept"]
    again = await store.append(rooms[1], C, "lost1", "text", "c", None, 3)
    assert not again.dup and again.message.seq == 1
    await store.close()


async def test_a_fold_that_fails_does_not_fail_the_writes_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real = WriterState._fold
    failures = 0

    def flaky(self: WriterState, conn: sqlite3.Connection, budget: int | None) -> None:
        nonlocal failures
        if self.old_next < len(self.old_rooms) and failures < 3:
            failures += 1
            real(self, conn, budget)  # it did its work, then the disk said no
            raise sqlite3.OperationalError("disk I/O error")
        real(self, conn, budget)

    monkeypatch.setattr(WriterState, "_fold", flaky)
    store, rooms = await _open(tmp_path / "c.db", 4)
    for n in range(80):
        appended = await store.append(rooms[n % 4], C, f"m{n}", "text", "x", None, n)
        assert appended.message.seq == n // 4 + 1
    assert failures == 3 and "could not fold its log" in caplog.text
    for room in rooms:
        assert _gapless(await store.messages_after(room, 0, 100), 1)
        assert await store.head(room) == 20
    await store.close()
    assert _count(tmp_path / "c.db", "messages") == 80


async def test_a_crash_after_a_fold_and_before_the_delete_loses_and_repeats_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files as a crash would leave them when every room of the old generation is
    folded but the old table is not yet emptied: a message is then in both tables.
    Opening them folds the log and keeps each message once."""
    monkeypatch.setattr(sqlite_store, "IDLE_FOLD_S", 3600.0)
    store, rooms = await _open(tmp_path / "c.db", 5, generation_rows=30)
    crashed = tmp_path / "crashed"
    crashed.mkdir()

    sent: dict[tuple[str, int], str] = {}

    def send_or_crash(n: int, conn: sqlite3.Connection, state: WriterState) -> int | None:
        """In the writer: the files as they are if it crashed now (between commits), once
        every room of the old generation is folded and the old table not yet emptied;
        until then, one more message (each a commit of its own, with one step of fold)."""
        if state.old_full and state.old_next == len(state.old_rooms):
            for name in ("c.db", "c.db-wal"):
                shutil.copy(tmp_path / name, crashed / name)
            return 1 - state.live
        room = rooms[n % 5]
        m = state.append(conn, room, C, "text", f"body {n}", None, n, f"m{n}")
        sent[room, m.seq] = f"m{n}"
        return None

    for n in range(200):
        old = await store._write(functools.partial(send_or_crash, n))
        if old is not None:
            break
    assert old is not None
    db = sqlite3.connect(crashed / "c.db")
    assert db.execute(f"SELECT count(*) FROM recent{old}").fetchone()[0] == 30
    db.close()
    await store.close()

    after = SQLiteStore(crashed / "c.db")
    await after.open()
    try:
        stored = {}
        for room in rooms:
            messages = await after.messages_after(room, 0, 1000)
            assert _gapless(messages, 1)
            stored.update({(m.room, m.seq): m.cmid for m in messages})
        assert stored == sent
        again = await after.append(rooms[0], C, "m0", "text", "x", None, 0)
        assert again.dup and again.message.seq == 1
    finally:
        await after.close()
    assert _count(crashed / "c.db", "messages") == len(sent)
    assert _count(crashed / "c.db", f"recent{old}") == 0


CONVERSATIONS = ["CPCCPCCCPCCC", "CCCC", "CCPP", "PCPC", "P", ""]


@pytest.mark.parametrize("senders", CONVERSATIONS)
async def test_unanswered_since_counts_folded_and_unfolded_messages_alike(
        tmp_path: Path, senders: str) -> None:
    """The provider answers within a working day: the reply is due from the client's
    first message after the provider's last, whether those are folded yet or not, in a
    session transaction and in a read-only view alike."""
    store, rooms = await _open(tmp_path / "c.db", 1, generation_rows=10**6)
    room = rooms[0]
    for n, sender in enumerate(senders):
        await store.append(room, C if sender == "C" else P, None, "text", "x", None, 1000 + n)
    expected = None
    for n, sender in enumerate(senders):
        if sender == "P":
            expected = None
        elif expected is None:
            expected = 1000 + n

    for folded in range(len(senders) + 1):
        def fold_first(conn: sqlite3.Connection, state: WriterState, folded: int = folded
                       ) -> None:
            entry = state.pending[room]  # the first `folded` messages go to `messages`
            sqlite_fold.insert_rows(conn, "messages", [
                sqlite_fold._log_row(m) for m in entry.rows[entry.lo:folded]])
            state.journal.append(("fold", entry, entry.lo, entry.old_end))
            entry.lo = folded
            state.touched[room] = entry
            state.folded = True

        if senders:
            await store._write(fold_first)
        assert await store.view(lambda tx: tx.unanswered_since(room, C, P)) == expected
        assert await store.transact(lambda tx: tx.unanswered_since(room, C, P)) == expected
    await store.close()


async def test_a_view_that_a_fold_overtook_runs_again_and_misses_nothing(
        tmp_path: Path) -> None:
    """A read-only view takes a room's unfolded messages when it first needs them. Here
    the room's messages are folded after the view's transaction began and before it
    looked: that try would see them nowhere, so the view runs again."""
    store, rooms = await _open(tmp_path / "c.db", 1, generation_rows=10**6)
    room = rooms[0]
    for n, sender in enumerate([C, P, C]):
        await store.append(room, sender, None, "text", "x", None, 1000 + n)
    loop = asyncio.get_running_loop()

    def fold_all_of_it(conn: sqlite3.Connection, state: WriterState) -> None:
        entry = state.pending[room]
        sqlite_fold.insert_rows(conn, "messages", [
            sqlite_fold._log_row(m) for m in entry.rows[entry.lo:]])
        state.journal.append(("fold", entry, entry.lo, entry.old_end))
        entry.lo = len(entry.rows)
        state.touched[room] = entry
        state.folded = True

    tries = 0

    def fn(tx: Tx) -> int | None:
        nonlocal tries
        tries += 1
        assert tx.room(room) is not None  # the transaction has begun
        if tries == 1:  # the writer folds, and the reader looks only afterwards
            asyncio.run_coroutine_threadsafe(store._write(fold_all_of_it), loop).result(10)
        return tx.unanswered_since(room, C, P)

    assert await store.view(fn) == 1002
    assert tries == 2
    assert await store.view(fn) == 1002 and tries == 3  # nothing folded: one try
    await store.close()


async def test_a_busy_rooms_folded_messages_leave_memory_and_a_taken_view_stays_as_it_was(
        tmp_path: Path) -> None:
    """One room takes every message: its folded ones leave the writer's memory (at most
    two generations stay), and a view a reader took before never changes under it."""
    store, rooms = await _open(tmp_path / "c.db", 1, generation_rows=100)
    room = rooms[0]
    for n in range(150):
        await store.append(room, C, f"m{n}", "text", f"b{n}", None, n)
    rows, lo, hi = store._published.rooms[room].view  # what a reader holds
    before = rows[lo:hi]
    assert len(before) >= 50
    for n in range(150, 700):
        await store.append(room, C, f"m{n}", "text", f"b{n}", None, n)
        if n % 50 == 0:
            state = await _state(store)
            assert state["unfolded"] <= 2 * 100 + 1, state
    assert rows[lo:hi] == before  # the list it holds was never changed
    entry = store._published.rooms.get(room)  # none when every message is folded
    assert entry is None or len(entry.rows) <= 2 * 100 + 1  # folded rows were dropped
    assert _gapless(await store.messages_after(room, 0, 10**4), 1)
    assert [m.body for m in await store.messages_before(room, None, 3)] == ["b697", "b698",
                                                                            "b699"]
    await store.close()


async def test_batches_that_fail_before_they_begin_lose_nothing_across_swaps(
        tmp_path: Path) -> None:
    """Another process holding the write lock makes whole batches fail at BEGIN, here
    after every message, while the log tables swap every few messages: nothing the
    writer did in the commits before is undone, and nothing acknowledged is lost."""
    store, rooms = await _open(tmp_path / "c.db", 2, generation_rows=3)
    await store._write(lambda conn, _: conn.execute("PRAGMA busy_timeout=50"))
    acked = 0
    for n in range(16):
        await store.append(rooms[n % 2], C, f"m{n}", "text", "x", None, n)
        acked += 1
        other = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held: the next batch fails
        with pytest.raises(InternalError):
            await store.append(rooms[n % 2], C, f"lost{n}", "text", "x", None, n)
        other.execute("ROLLBACK")
        other.close()
    for room in rooms:
        assert _gapless(await store.messages_after(room, 0, 100), 1)
    assert sum((await store.heads(rooms)).values()) == acked
    await store.close()
    assert _count(tmp_path / "c.db", "messages") == acked


@pytest.mark.parametrize("count", [0, 1, 2, 3, 255, 256, 257, 600])
def test_rows_are_inserted_in_order_many_to_a_statement(count: int) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(sqlite_fold.LOG_SCHEMA)
    rows = [(f"r{i % 7}", i + 1, "c", "text", f"b{i}", None, i, i if i % 2 else f"m{i}", None)
            for i in range(count)]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    sqlite_fold.insert_rows(conn, "recent0", rows)
    conn.set_trace_callback(None)
    stored = conn.execute(f"SELECT {sqlite_fold.MSG_COLUMNS} FROM recent0 ORDER BY rowid")
    assert [tuple(r) for r in stored] == rows  # every value, with its type, in order
    assert len(statements) == count // 256 + bin(count % 256).count("1")  # 256s, then 2**k
