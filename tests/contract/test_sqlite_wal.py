"""The embedded store under steady writing: commits grouped, the write-ahead log kept
short by checkpoints, nothing lost on the way, and a clean close leaves no WAL behind."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from server.errors import InternalError
from server.ids import RoomId, UserId
from server.store import RoomRecord, sqlite_checkpoint
from server.store import sqlite as sqlite_store
from server.store.sqlite import SQLiteStore


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def _open_with_rooms(tmp_path: Path, count: int) -> tuple[SQLiteStore, list[RoomId]]:
    """A store in `tmp_path` with `count` rooms r0, r1, ... of client c and provider p."""
    store = SQLiteStore(tmp_path / "c.db")
    await store.open()
    rooms = [RoomId(f"r{i}") for i in range(count)]
    for room in rooms:
        await store.create_room(RoomRecord(room, UserId("c"), UserId("p"), "self_pay",
                                           "therapy", True, 0))
    return store, rooms


async def _write_for(store: SQLiteStore, rooms: list[RoomId], seconds: float,
                     wal: Path) -> tuple[int, int]:
    """Append from 10 writers for `seconds`; (messages written, largest WAL seen)."""
    written = 0
    largest = 0
    stop = time.monotonic() + seconds

    async def writer(i: int) -> None:
        nonlocal written
        n = 0
        while time.monotonic() < stop:
            room = rooms[(i + n) % len(rooms)]
            await store.append(room, UserId("c"), f"w{i}-{n}", "text", "x" * 200, None, n)
            n += 1
            written += 1
            await asyncio.sleep(0.005)  # about 2,000 appends a second from 10 writers

    async def watch() -> None:
        nonlocal largest
        while time.monotonic() < stop:
            largest = max(largest, _size(wal))
            await asyncio.sleep(0.05)

    await asyncio.gather(watch(), *(writer(i) for i in range(10)))
    return written, largest


async def test_commits_are_grouped_and_the_wal_stays_short_while_writes_go_on(
        tmp_path: Path) -> None:
    store, rooms = await _open_with_rooms(tmp_path, 20)
    wal = tmp_path / "c.db-wal"
    written, largest = await _write_for(store, rooms, 3.0, wal)
    # Grouped: writes that arrive within MIN_COMMIT_INTERVAL_S of a commit share the next.
    assert store.commits < written / 2, (store.commits, written)
    assert store.commits <= 3.0 / sqlite_store.MIN_COMMIT_INTERVAL_S + 50
    # Checkpointed: every commit appends its pages to the WAL (about 20 KiB here); the
    # WAL is copied into the database and started over, so it never holds them all.
    assert largest < max(8 << 20, store.commits * 4096 // 4), (largest, store.commits)
    # ... by the checkpointer beside the writer, not inside the writer's commits, which
    # checkpoint only past WRITER_AUTOCHECKPOINT frames, a WAL four times the largest seen.
    assert largest * 4 < sqlite_store.WRITER_AUTOCHECKPOINT * 4096
    assert store._checkpointer is not None
    checkpointer = store._checkpointer.thread
    await store.close()
    assert store.checkpoints >= 5, store.checkpoints
    assert not checkpointer.is_alive()
    # Everything is in the database file itself after a clean close, every seq in place.
    db = sqlite3.connect(tmp_path / "c.db")
    try:
        total = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        assert total == written
        for room in rooms:
            seqs = [r[0] for r in db.execute(
                "SELECT seq FROM messages WHERE room = ? ORDER BY seq", (room,))]
            assert seqs == list(range(1, len(seqs) + 1))
    finally:
        db.close()
    assert _size(wal) == 0


async def test_read_marks_given_while_the_writer_is_busy_share_one_op(tmp_path: Path) -> None:
    """A client marks nearly every message it sees as read: marks waiting for the writer
    are written by one op (the highest per room and user), not one op each."""
    store, rooms = await _open_with_rooms(tmp_path, 10)
    ops_before = store.ops
    marks = [(rooms[i % 10], UserId("cp"[i // 10 % 2]), (i * 37) % 101) for i in range(400)]
    stored = await asyncio.gather(*(store.set_read(room, user, seq)
                                    for room, user, seq in marks))
    # The first mark may find the writer idle and go alone; the rest wait and join.
    assert store.ops - ops_before <= 3, store.ops - ops_before
    highest: dict[tuple[RoomId, UserId], int] = {}
    for room, user, seq in marks:
        highest[room, user] = max(highest.get((room, user), 0), seq)
    for (room, user, seq), got in zip(marks, stored, strict=True):
        assert seq <= got <= highest[room, user]
    for room in rooms:
        assert await store.reads(room) == {UserId(u): highest[room, UserId(u)] for u in "cp"}
    # A caller that gives up does not take the others' answer with it.
    waiting = [asyncio.create_task(store.set_read(rooms[0], UserId("c"), 500 + i))
               for i in range(3)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    assert await asyncio.gather(*waiting[1:]) == [502, 502]
    provider_mark = highest[rooms[0], UserId("p")]
    assert await store.reads(rooms[0]) == {UserId("c"): 502, UserId("p"): provider_mark}
    await store.close()


async def test_a_batch_of_read_marks_over_many_statements_keeps_each_highest_mark(
        tmp_path: Path) -> None:
    """A batch's marks go to SQLite many to a statement (at most 256 rows each): with 600
    keys in one batch, spread over several statements, every caller still hears its own
    key's mark, and a mark below the stored one leaves the stored one."""
    store, rooms = await _open_with_rooms(tmp_path, 300)
    for room in rooms[:100]:  # already further on: these stay
        assert await store.set_read(room, UserId("c"), 500) == 500
    heard: dict[tuple[RoomId, UserId], int | None] = {}
    done = asyncio.Event()

    def hear(key: tuple[RoomId, UserId], stored: int | None) -> None:
        heard[key] = stored
        if len(heard) == 600:
            done.set()

    commits_before = store.commits
    for n, room in enumerate(rooms):
        for user in (UserId("c"), UserId("p")):
            key = (room, user)
            store.read_later(room, user, 10 + n, lambda stored, key=key: hear(key, stored))
    await asyncio.wait_for(done.wait(), 5)
    assert store.commits - commits_before == 1
    for n, room in enumerate(rooms):
        client_mark = 500 if n < 100 else 10 + n
        assert heard[room, UserId("c")] == client_mark
        assert heard[room, UserId("p")] == 10 + n
        assert await store.reads(room) == {UserId("c"): client_mark, UserId("p"): 10 + n}
    await store.close()


async def test_read_marks_nobody_waits_for_are_held_and_written_together(
        tmp_path: Path) -> None:
    """`read_later` holds a batch READ_MARK_DELAY_S so the marks of that time share one
    commit; each caller hears its stored mark on the loop; a waiting `set_read` sends a
    held batch at once; closing the store writes what is held."""
    store, rooms = await _open_with_rooms(tmp_path, 10)
    loop = asyncio.get_running_loop()
    heard: list[tuple[int, int | None, float]] = []
    all_heard = asyncio.Event()

    def hear(i: int, stored: int | None) -> None:
        heard.append((i, stored, loop.time()))
        if len(heard) == 200:
            all_heard.set()

    commits_before = store.commits
    started = loop.time()
    for i in range(200):
        store.read_later(rooms[i % 10], UserId("c"), i, lambda stored, i=i: hear(i, stored))
        if i % 50 == 49:
            await asyncio.sleep(0)  # marks keep joining while the batch is held
    assert heard == []  # nothing is answered before it is stored
    await asyncio.wait_for(all_heard.wait(), 5)
    assert store.commits - commits_before == 1  # 200 marks, one transaction
    assert min(t for _, _, t in heard) - started >= sqlite_store.READ_MARK_DELAY_S * 0.9
    for i, stored, _ in heard:  # the highest of the batch for that room and user
        assert stored == max(j for j in range(200) if j % 10 == i % 10)
    assert await store.reads(rooms[3]) == {UserId("c"): 193}

    # A caller that waits does not wait for the hold, and takes the held marks with it.
    store.read_later(rooms[0], UserId("p"), 7, lambda stored: heard.append((-1, stored, 0.0)))
    started = loop.time()
    assert await store.set_read(rooms[1], UserId("p"), 9) == 9
    assert loop.time() - started < sqlite_store.READ_MARK_DELAY_S
    await asyncio.sleep(0)
    assert heard[-1][:2] == (-1, 7)

    # Held marks are written when the store closes.
    store.read_later(rooms[2], UserId("p"), 11, lambda stored: None)
    await store.close()
    again = SQLiteStore(tmp_path / "c.db")
    await again.open()
    assert await again.reads(rooms[2]) == {UserId("c"): 192, UserId("p"): 11}
    await again.close()


def _cpu_s(thread: threading.Thread) -> float:
    """CPU seconds the thread has used (user + system), from /proc."""
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


async def test_a_reader_holding_old_frames_does_not_make_the_checkpointer_spin(
        tmp_path: Path) -> None:
    """A backup (any long read transaction) keeps the frames it reads from being copied;
    the checkpointer waits for its next turn instead of retrying at once, and copies
    everything once the reader is gone."""
    store, rooms = await _open_with_rooms(tmp_path, 20)
    backup = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    backup.execute("BEGIN")
    backup.execute("SELECT count(*) FROM rooms").fetchone()  # its snapshot: this moment
    assert store._checkpointer is not None
    checkpointer = store._checkpointer.thread
    cpu_before = _cpu_s(checkpointer)
    await _write_for(store, rooms, 1.5, tmp_path / "c.db-wal")
    # About 15 looks in 1.5 s take next to nothing (0.00 s measured); a busy loop took
    # half a second of CPU here, competing with the writers.
    assert _cpu_s(checkpointer) - cpu_before < 0.15
    backup.execute("COMMIT")
    backup.close()
    rounds = store.checkpoints
    await _write_for(store, rooms, 1.0, tmp_path / "c.db-wal")
    assert store.checkpoints > rounds  # the reader gone, the WAL starts over again
    await store.close()


async def test_read_marks_work_again_after_a_batch_failed_before_they_were_written(
        tmp_path: Path) -> None:
    """Another process holding the write lock makes a whole batch fail (`internal`) before
    its read-mark op runs; the next mark must not join that failed op."""
    store, (room,) = await _open_with_rooms(tmp_path, 1)
    await store._write(lambda conn, _: conn.execute("PRAGMA busy_timeout=100"))
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    heard: list[int | None] = []
    store.read_later(room, UserId("p"), 2, heard.append)  # nobody waits: told `None`
    with pytest.raises(InternalError):
        await store.set_read(room, UserId("c"), 3)
    other.execute("ROLLBACK")
    other.close()
    assert heard == [None]
    assert await store.set_read(room, UserId("c"), 4) == 4
    assert await store.reads(room) == {UserId("c"): 4}
    await store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_the_writer_checkpoints_by_itself_once_the_checkpointer_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A checkpointer thread that ends on a fault of its own (not stopped) is noticed by
    the writer, which goes back to SQLite's own checkpoints: the WAL stays short."""

    def broken(self: sqlite_checkpoint.Checkpointer) -> int | None:
        raise RuntimeError("a fault in the checkpointer")

    monkeypatch.setattr(sqlite_checkpoint.Checkpointer, "_copy", broken)
    store, rooms = await _open_with_rooms(tmp_path, 20)
    written, largest = await _write_for(store, rooms, 2.0, tmp_path / "c.db-wal")
    pages = await store._write(
        lambda conn, _: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert pages == sqlite_checkpoint.ALONE_AUTOCHECKPOINT
    assert "the writer checkpoints by itself" in caplog.text
    assert largest < 8 << 20, largest  # about 1,000 pages and the commit that crossed them
    assert store.checkpoints == 0
    await store.close()
    db = sqlite3.connect(tmp_path / "c.db")
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == written
    db.close()
