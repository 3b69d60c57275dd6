"""One generator process: its share of the users, its event loop, and what it tells the parent.

The parent starts :func:`worker_process` once per ``--procs``; each worker owns
whole rooms (both members), so every message is checked inside one process:
the sender's ack and the partner's receipt meet in the same
:class:`~loadtest.tally.Flow`. A worker connects its users, reports ``ready``,
waits for the parent's ``go`` and runs its scenario; every second it puts a
:class:`WorkerTick` on the parent's queue, and at the end one
:class:`WorkerFinal`. It also measures its own event-loop lag, which is how a
saturated generator shows itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import queue
import random
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, Literal

import uvloop

from loadtest.tally import Flow, Histogram, Meter, Totals
from loadtest.user import ChatSettings, ChatUser, Gate, Member
from loadtest.wire import Codec, Encoding

Scenario = Literal["chat", "idle", "churn", "reconnect-storm", "live", "multinode"]
HistState = tuple[dict[int, int], int, int, int]


@dataclass(frozen=True)
class RoomPlan:
    room: str
    client: Member
    provider: Member
    session: str = ""  # a live session id, for the live scenario


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    scenario: Scenario
    rooms: tuple[RoomPlan, ...]
    settings: ChatSettings
    encoding: Encoding
    duration_s: float
    drain_s: float
    offline_share: float
    offline_for_s: float
    storm_at_s: float
    churn_rate: float
    open_concurrency: int
    seed: int
    cpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class WorkerTick:
    index: int
    connections: int
    totals: Totals
    errors: dict[str, int]
    latency: HistState
    ack: HistState
    setup: HistState
    setups: int
    scheduled: int
    schedule_late: int
    loop_lag_max_ms: float


@dataclass(frozen=True)
class WorkerFinal:
    index: int
    totals: Totals
    errors: dict[str, int]
    latency: HistState
    ack: HistState
    setup: HistState
    loop_lag: HistState
    setups: int
    scheduled: int
    schedule_late: int
    backlog_delivered: int
    extra: dict[str, Any] = field(default_factory=dict)


class Worker:
    """The state of one generator process."""

    def __init__(self, plan: WorkerPlan, out: Any, go: MpEvent) -> None:
        self.plan = plan
        self.out = out
        self.go = go
        self.meter = Meter()
        self.loop_lag = Histogram()
        self.lag_max_ns = 0
        self.extra: dict[str, Any] = {}
        self.flows: list[Flow] = []

    def put(self, item: tuple[str, Any]) -> None:
        try:
            self.out.put_nowait(item)
        except queue.Full:
            self.meter.errors.add("tick_dropped")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(self._tick_loop())
            lag = tg.create_task(self._lag_loop())
            try:
                if self.plan.scenario in ("churn", "live"):
                    from loadtest.churn import run_churn, run_live

                    runner = run_churn if self.plan.scenario == "churn" else run_live
                    await runner(self)
                else:
                    await self._run_rooms()
            finally:
                ticker.cancel()
                lag.cancel()
        self._send_tick()
        self.put(("final", self._final()))

    async def wait_go(self) -> None:
        """Tell the parent this worker is ready, and wait for its ``go``.

        What exists by now (users, connections, flows) lives until the end: it is
        moved out of the collector's sight, so that a full collection during the
        run walks only what the run allocates (tens of ms of loop lag otherwise).
        """
        gc.collect()
        gc.freeze()
        self.put(("ready", (self.plan.index, self.meter.connections)))
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, self.go.wait, 0.5):
            pass

    async def _run_rooms(self) -> None:
        plan = self.plan
        rng = random.Random(plan.seed)
        codec = Codec(plan.encoding)
        settings = plan.settings
        if plan.scenario == "idle":
            settings = ChatSettings(0.0, 0.0, 0.0, 0.0, 0, settings.heartbeat_s)
        gate = Gate(2 * len(plan.rooms), plan.open_concurrency)
        users: list[ChatUser] = []
        for room in plan.rooms:
            client_flow, provider_flow = Flow(self.meter.totals), Flow(self.meter.totals)
            self.flows += [client_flow, provider_flow]
            for member, mine, theirs in (
                (room.client, client_flow, provider_flow),
                (room.provider, provider_flow, client_flow),
            ):
                users.append(ChatUser(member, mine, theirs, settings, self.meter, codec, rng, gate))
        async with asyncio.TaskGroup() as tg:
            for user in users:
                offline_at = None
                if plan.offline_share and rng.random() < plan.offline_share:
                    offline_at = rng.uniform(0.1, 0.5) * plan.duration_s
                tg.create_task(user.life(offline_at, plan.offline_for_s))
            await gate.all_opened.wait()
            await self.wait_go()
            start = gate.go_at = time.monotonic()
            gate.go.set()
            if plan.scenario == "reconnect-storm":
                await self._storm(users, gate, start)
            await asyncio.sleep(max(0.0, start + plan.duration_s - time.monotonic()))
            gate.stop.set()
            await self._drain(gate, start + plan.duration_s + plan.drain_s)
            for user in users:
                user.interrupt("done")

    async def _storm(self, users: list[ChatUser], gate: Gate, start: float) -> None:
        await asyncio.sleep(max(0.0, start + self.plan.storm_at_s - time.monotonic()))
        online = [u for u in users if u.ws is not None]
        gate.expect_resumes(len(online))
        t0 = time.monotonic()
        for user in online:
            user.interrupt("drop")
        try:
            async with asyncio.timeout(max(self.plan.duration_s, 30.0)):
                await gate.all_resumed.wait()
            self.extra["storm_s"] = time.monotonic() - t0
        except TimeoutError:
            self.extra["storm_s"] = None
        self.extra["storm_dropped"] = len(online)
        self.extra["storm_resumed"] = gate.resumes

    async def _drain(self, gate: Gate, deadline: float) -> None:
        """Wait (bounded) until every sent message is acknowledged and delivered."""
        if self.meter.totals.outstanding() <= 0:
            gate.drained.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await gate.drained.wait()
        self.extra["drained"] = self.meter.totals.outstanding() <= 0

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._send_tick()

    async def _lag_loop(self) -> None:
        period = 0.05
        while True:
            t0 = time.monotonic_ns()
            await asyncio.sleep(period)
            lag = time.monotonic_ns() - t0 - int(period * 1e9)
            if not self.go.is_set():
                continue  # connecting is not the run: it has its own figures
            self.loop_lag.record_ns(lag)
            self.lag_max_ns = max(self.lag_max_ns, lag)

    def _send_tick(self) -> None:
        m = self.meter
        lat, ack, setup = m.take_interval()
        t = m.totals
        snapshot = Totals(t.sent, t.acked, t.delivered, 0, t.duplicated, t.out_of_order, 0)
        self.put(("tick", WorkerTick(
            self.plan.index, m.connections, snapshot, dict(m.errors.counts),
            lat.to_state(), ack.to_state(), setup.to_state(), m.setups, m.scheduled,
            m.schedule_late, self.lag_max_ns / 1e6,
        )))
        self.lag_max_ns = 0

    def _final(self) -> WorkerFinal:
        m = self.meter
        m.take_interval()
        totals = Totals()
        for flow in self.flows:
            totals.add(flow.settle())
        totals.out_of_order = m.totals.out_of_order
        return WorkerFinal(
            self.plan.index, totals, dict(m.errors.counts), m.latency_all.to_state(),
            m.ack_all.to_state(), m.setup_all.to_state(), self.loop_lag.to_state(), m.setups,
            m.scheduled, m.schedule_late, m.backlog_delivered, self.extra,
        )


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def worker_process(plan: WorkerPlan, out: Any, go: MpEvent) -> None:
    """The body of a generator process (the target of ``multiprocessing.Process``)."""
    if plan.cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, plan.cpus)
    raise_fd_limit()
    worker = Worker(plan, out, go)
    try:
        uvloop.run(worker.run())
    except BaseException as exc:  # report, then die: the parent must not wait forever
        worker.meter.errors.add(f"worker_crashed_{type(exc).__name__}")
        worker.put(("final", worker._final()))
        raise
