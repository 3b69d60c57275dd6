"""The embedded store under steady writing: commits grouped, the write-ahead log kept
short by checkpoints, nothing lost on the way, and a clean close leaves no WAL behind."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from server.ids import RoomId, UserId
from server.store import RoomRecord
from server.store import sqlite as sqlite_store
from server.store.sqlite import SQLiteStore


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


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
    store = SQLiteStore(tmp_path / "c.db")
    await store.open()
    rooms = [RoomId(f"r{i}") for i in range(20)]
    for room in rooms:
        await store.create_room(RoomRecord(room, UserId("c"), UserId("p"), "self_pay",
                                           "therapy", True, 0))
    wal = tmp_path / "c.db-wal"
    written, largest = await _write_for(store, rooms, 3.0, wal)
    # Grouped: writes that arrive within MIN_COMMIT_INTERVAL_S of a commit share the next.
    assert store.commits < written / 2, (store.commits, written)
    assert store.commits <= 3.0 / sqlite_store.MIN_COMMIT_INTERVAL_S + 50
    # Checkpointed: every commit appends its pages to the WAL (about 20 KiB here); the
    # WAL is copied into the database and started over, so it never holds them all.
    assert largest < max(8 << 20, store.commits * 4096 // 4), (largest, store.commits)
    await store.close()
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
