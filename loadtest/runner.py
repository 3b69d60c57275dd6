"""A run, from the parent's side: target, provisioning, worker processes, sampling and the report.

:func:`run` is what the command line and the benchmark call. It starts or
reaches the node, provisions rooms and tokens, splits the rooms over
``procs`` worker processes (both members of a room in the same worker),
releases them together once all are connected, and every second merges their
ticks into one timeline point while it samples the server's and the workers'
CPU and memory. The live progress line goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.collect import Collector
from loadtest.report import Report
from loadtest.target import (
    Node,
    Provisioned,
    TargetError,
    check_loopback,
    provision,
    provision_live,
    relay_rooms,
    spawn_confide,
    spawn_relay,
)
from loadtest.user import ChatSettings, Member
from loadtest.wire import Encoding, ws_url
from loadtest.worker import RoomPlan, Scenario, WorkerFinal, WorkerPlan, worker_process


@dataclass(frozen=True)
class RunConfig:
    scenario: Scenario
    urls: tuple[str, ...] = ()
    admin_token: str | None = None
    spawn: str = ""  # "", "confide" or "relay"
    no_auth: bool = False  # an external relay: the token is the user id
    users: int = 100
    rate: float = 1.0  # per user (chat...), or connections per second in all (churn)
    duration_s: float = 10.0
    procs: int = 1
    encoding: Encoding = "msgpack"
    jitter: float = 0.5
    typing_share: float = 0.2
    read_every_s: float = 1.0
    padding: int = 0
    offline_share: float = 0.0
    offline_for_s: float = 2.0
    storm_at_s: float = 0.0  # 0: half way through
    drain_s: float = 10.0
    open_concurrency: int = 500
    heartbeat_s: float = 25.0
    server_pid: int | None = None
    server_cpus: str = ""
    gen_cpus: str = ""
    rate_limit: int = 1_000_000  # for a spawned Confide; 0: the server's default
    server_args: tuple[str, ...] = ()
    server_log: Path | None = None
    progress: bool = True
    seed: int = 1


def run(config: RunConfig) -> Report:
    """Run one scenario and return its report."""
    with contextlib.ExitStack() as stack:
        if config.spawn == "confide":
            node = stack.enter_context(spawn_confide(
                config.server_cpus, config.rate_limit, config.server_args, config.server_log))
            urls: tuple[str, ...] = (node.url,)
        elif config.spawn == "relay":
            node = stack.enter_context(spawn_relay(config.server_cpus))
            urls = (node.url,)
        else:
            if not config.urls:
                raise TargetError("give --url (one or more), --spawn or --spawn-relay")
            kind = "relay" if config.no_auth else "external"
            node = Node(config.urls[0], kind, config.server_pid, config.admin_token)
            urls = config.urls
        check_loopback(urls)
        if config.scenario == "multinode" and len(urls) < 2:
            raise TargetError("multinode needs --url at least twice")
        return _run_against(config, node, urls)
    raise AssertionError("unreachable")


def _run_against(config: RunConfig, node: Node, urls: tuple[str, ...]) -> Report:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    n_rooms = max(1, config.users // 2)
    ttl = int(config.duration_s + config.drain_s + 3600)
    if node.kind == "relay":
        provisioned = relay_rooms(n_rooms)
    else:
        if not node.admin_token:
            raise TargetError("give --admin-token (or --spawn)")
        provisioned = asyncio.run(provision(node.url, node.admin_token, n_rooms, ttl))
    sessions: list[str] = []
    collector = Collector(config, node, urls, started_at, n_rooms)
    if config.scenario == "live":
        try:
            if node.kind == "relay" or not node.admin_token:
                raise TargetError("the relay has no live sessions")
            sessions = asyncio.run(provision_live(node.url, node.admin_token, provisioned))
        except TargetError as exc:
            return collector.unsupported(str(exc))
    plans = _plans(config, provisioned, sessions, urls)
    return _drive(config, plans, collector)


def _plans(
    config: RunConfig, rooms: list[Provisioned], sessions: list[str], urls: tuple[str, ...]
) -> list[WorkerPlan]:
    spread = config.scenario == "multinode"
    room_plans = []
    for i, p in enumerate(rooms):
        client_url = ws_url(urls[i % len(urls)] if spread else urls[0])
        provider_url = ws_url(urls[(i + 1) % len(urls)] if spread else urls[0])
        room_plans.append(RoomPlan(
            p.room,
            Member(p.client[0], p.client[1], p.room, client_url),
            Member(p.provider[0], p.provider[1], p.room, provider_url),
            sessions[i] if sessions else "",
        ))
    procs = max(1, min(config.procs, len(room_plans)))
    settings = ChatSettings(config.rate, config.jitter, config.typing_share,
                            config.read_every_s, config.padding, config.heartbeat_s)
    cpus = cpu_list(config.gen_cpus)
    return [
        WorkerPlan(
            index=k,
            scenario=config.scenario,
            rooms=tuple(room_plans[k::procs]),
            settings=settings,
            encoding=config.encoding,
            duration_s=config.duration_s,
            drain_s=config.drain_s,
            offline_share=config.offline_share,
            offline_for_s=config.offline_for_s,
            storm_at_s=config.storm_at_s or config.duration_s / 2,
            churn_rate=config.rate / procs,
            open_concurrency=max(1, config.open_concurrency // procs),
            seed=config.seed * 1000 + k,
            cpus=cpus,
        )
        for k in range(procs)
    ]


def cpu_list(spec: str) -> tuple[int, ...]:
    """The CPUs of a taskset-style list ("0", "0-1,3"); ValueError naming what is wrong, for
    a list that is not one or names a CPU this machine does not have."""
    cpus: list[int] = []
    try:
        for part in filter(None, spec.split(",")):
            lo, _, hi = part.partition("-")
            cpus += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise ValueError(f"a CPU list looks like 0 or 0-1,3, not {spec!r}") from None
    have = os.cpu_count() or 1
    missing = [c for c in cpus if not 0 <= c < have]
    if missing:
        raise ValueError(f"CPU {missing[0]} is not on this machine (CPUs 0-{have - 1})")
    return tuple(cpus)


def cpu_flag_error(**flags: str) -> str | None:
    """What is wrong with the first bad CPU-list flag (`server_cpus="0"` is checked as
    `--server-cpus`), or None."""
    for name, spec in flags.items():
        try:
            cpu_list(spec or "")
        except ValueError as exc:
            return f"--{name.replace('_', '-')}: {exc}"
    return None


def _drive(config: RunConfig, plans: list[WorkerPlan], collector: Collector) -> Report:
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue(maxsize=10_000)
    go = ctx.Event()
    collector.sample_start()
    procs = [ctx.Process(target=worker_process, args=(plan, out, go), daemon=True)
             for plan in plans]
    for p in procs:
        p.start()
    collector.watch_workers([p.pid for p in procs if p.pid is not None])
    users = sum(2 * len(plan.rooms) for plan in plans)
    connect_deadline = time.monotonic() + 60 + users / 200
    ready: set[int] = set()
    finals: dict[int, WorkerFinal] = {}
    end_deadline: float | None = None
    next_sample = time.monotonic() + 1.0
    try:
        while len(finals) < len(plans):
            now = time.monotonic()
            try:
                kind, item = out.get(timeout=max(0.01, min(0.2, next_sample - now)))
            except queue.Empty:
                kind, item = "", None
            if kind == "ready":
                ready.add(item[0])
                collector.connections_go += item[1]
            elif kind == "tick":
                collector.tick(item)
            elif kind == "final":
                finals[item.index] = item
            if not go.is_set() and len(ready) == len(plans):
                collector.mark_go()
                go.set()
                end_deadline = time.monotonic() + config.duration_s + config.drain_s + 60
            now = time.monotonic()
            if now >= next_sample:
                next_sample += 1.0
                line = collector.second(now, connecting=not go.is_set())
                if config.progress:
                    _progress(line)
            if not go.is_set() and now > connect_deadline:
                collector.note("workers did not finish connecting in time")
                go.set()
                end_deadline = now + config.duration_s + config.drain_s + 60
            if end_deadline is not None and now > end_deadline:
                collector.note("workers did not finish in time")
                break
            if all(not p.is_alive() for p in procs) and out.empty() and len(finals) < len(plans):
                collector.note("a worker process died without a report")
                break
    finally:
        if config.progress:
            sys.stderr.write("\n")
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    return collector.report(list(finals.values()))


_last_newline = 0.0


def _progress(line: str) -> None:
    """Overwrite the progress line on a terminal; one line every 5 s otherwise."""
    global _last_newline
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K" + line)
        sys.stderr.flush()
    elif time.monotonic() - _last_newline >= 5:
        _last_newline = time.monotonic()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
