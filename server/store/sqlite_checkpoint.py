"""The embedded store's checkpointer: the WAL copied into the database beside the writer.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: the
writer copies about 4 MB of pages and fsyncs the database while every write queued
behind it waits (70-280 ms were measured on a busy disk). `Checkpointer` does that
copying on a thread and connection of its own instead, every CHECKPOINT_EVERY_S. A
checkpoint beside a busy writer never quite catches up (frames arrive while it copies),
and the WAL starts over only once every frame is in the database; so once fewer than
CHECKPOINT_REST_FRAMES are left, the checkpointer asks the writer to copy the rest
between two commits (a few pages and a short fsync), and the writer's next transaction
starts the WAL over. Every checkpoint is PASSIVE: it never waits for the writer or a
reader, and it fsyncs as the connection's `synchronous` setting says, like SQLite's own.

If the checkpointer cannot keep up or its thread ends, the writer's own automatic
checkpoint takes over (`WRITER_AUTOCHECKPOINT`, or SQLite's 1,000 once the thread is
gone), so the WAL never grows without bound.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger("confide.store")

CHECKPOINT_EVERY_S = 0.1  # the checkpointer copies the WAL into the database this often
CHECKPOINT_REST_FRAMES = 64  # ... until fewer frames than this are left for the writer
# Past this many frames (80 MB) the writer checkpoints inside its commit, as SQLite does
# by default at 1,000, in case the checkpointer falls behind.
WRITER_AUTOCHECKPOINT = 20_000
ALONE_AUTOCHECKPOINT = 1_000  # the writer's own, once the checkpointer is gone
FAILURE_LOG_EVERY_S = 60.0  # a failing checkpoint is logged once, then at most this often


class Checkpointer:
    """The checkpointer thread and what it shares with the writer (see the module)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.stopping = threading.Event()
        # Set here, read by the writer after each commit (a plain flag: the writer looks
        # at it hundreds of times a second); the writer copies the rest, then `rest_done`.
        self.rest_asked = False
        self.rest_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
        self.rounds = 0  # statistics: rounds that left the rest to the writer
        self._failures = 0
        self._failure_logged = -FAILURE_LOG_EVERY_S
        self._alone = False

    def _run(self) -> None:
        try:
            while not self.stopping.wait(CHECKPOINT_EVERY_S):
                try:
                    left = self._copy()
                except sqlite3.Error as exc:
                    self.failed(exc)
                    continue
                if left is None:
                    continue
                self.rest_done.clear()
                self.rest_asked = True
                while not self.rest_done.wait(CHECKPOINT_EVERY_S):  # no writes: no hurry
                    if self.stopping.is_set():
                        return
                self.rounds += 1
        finally:
            self._conn.close()

    def _copy(self) -> int | None:
        """Copy WAL frames until fewer than CHECKPOINT_REST_FRAMES are left; how many are
        left, or None when there was nothing to copy, another checkpoint was busy, the
        store is closing (its last checkpoint copies everything), or a reader still reads
        frames older than the rest (a backup, say): next time, then."""
        before = -1
        while not self.stopping.is_set():
            busy, frames, copied = self._conn.execute(
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or frames <= 0 or copied <= before:
                return None
            if frames - copied < CHECKPOINT_REST_FRAMES:
                return int(frames - copied)
            before = copied
        return None

    def failed(self, exc: sqlite3.Error) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._failure_logged >= FAILURE_LOG_EVERY_S:
            self._failure_logged = now
            log.warning("store checkpoint failed (%d times so far): %s", self._failures,
                        type(exc).__name__)

    # -- on the writer's thread -----------------------------------------------------------

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Between two commits: copy the last frames if asked; take over if the thread
        has ended without being stopped."""
        if self.rest_asked:
            self.rest_asked = False
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                self.failed(exc)
            self.rest_done.set()
        elif not self._alone and not self.thread.is_alive() and not self.stopping.is_set():
            self._alone = True
            log.error("the store's checkpointer stopped: the writer checkpoints by itself")
            try:
                conn.execute(f"PRAGMA wal_autocheckpoint={ALONE_AUTOCHECKPOINT}")
            except sqlite3.Error as exc:
                self.failed(exc)
