"""The deadline runner (R17): fires every due job once, on time, on whichever node is up.

Jobs live in the store, so a node that restarts finds what is due and fires late jobs at
once. Each job is fired by `Sessions.fire`, which deletes it in the same transaction that
applies it: of two nodes that race for a job, one deletes it and applies its step, the
other finds it gone and does nothing. Between jobs the runner sleeps until the next due
time, or until `wake()` says a new one may be earlier (at most `poll_s`, for jobs
scheduled by other nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server.sessions import Sessions, ms
from server.store import Store

log = logging.getLogger("confide.jobs")


class DeadlineRunner:
    """The loop that fires due jobs; one per node, owned by the app's lifespan."""

    def __init__(self, store: Store, sessions: Sessions, *, poll_s: float = 30.0,
                 batch: int = 100) -> None:
        self.store = store
        self.sessions = sessions
        self.poll_s = poll_s
        self.batch = batch
        self._wake = asyncio.Event()
        self.fired = 0  # statistics: jobs this node applied
        self._failing = False

    def wake(self) -> None:
        """A job was scheduled, or the clock moved: look again now."""
        self._wake.set()

    async def run_due(self) -> int:
        """Fire every job due now; how many this node applied."""
        applied = 0
        while True:
            due = await self.store.due_jobs(ms(self.sessions.clock()), self.batch)
            for job in due:
                try:
                    if await self.sessions.fire(job):
                        applied += 1
                except Exception:
                    log.exception("deadline %s failed; it stays due", job.kind)
                    self._failing = True
                    return applied
            if len(due) < self.batch:
                self.fired += applied
                return applied

    async def run(self) -> None:
        while True:
            self._wake.clear()
            self._failing = False
            await self.run_due()
            next_due = await self.store.next_due_ms()
            delay = self.poll_s
            if next_due is not None:
                delay = min(delay, max(0.0, (next_due - ms(self.sessions.clock())) / 1000))
            if self._failing:
                delay = max(delay, 1.0)  # a failing job is retried, not spun on
            if delay > 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # arrives as the wait completes, and the lifespan would wait for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
