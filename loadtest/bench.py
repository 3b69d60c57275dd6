"""The standard benchmark: one command that measures this machine and writes docs/benchmarks.md.

    python -m loadtest.bench --out docs/benchmarks.md [--quick] [--reports DIR]

Every step spawns its own node (Confide on the embedded default, or the
baseline relay) pinned to one core, with the generator pinned to another
(``--server-cpus 0 --gen-cpus 1`` by default), raised rate limits and the
process's hard open-file limit. The steps, and the targets of issue 3:

0. disk: before anything else is started, :mod:`loadtest.disk` writes and
   fdatasyncs 128 KB 450 times a second, as the store commits at 5,000 msg/s, in the
   folder where the nodes keep their data (30 s; no target: it is the floor
   the disk puts under the p99 targets). It runs in a child process pinned to
   the server's CPUs, since this process may be pinned to the generator's;
   then :mod:`loadtest.cpu` measures how fast that core runs Python (10 s), the
   speed every figure depends on;
1. ramp on the relay, then on Confide: the highest delivered msg/s with
   p99 ≤ 100 ms and nothing lost (Confide ≥ 20,000 msg/s; ratio to the relay
   ≥ 0.5); after the first step that misses, two more runs halve the gap to the
   last step that held (`climb`); and the server's CPU per message on both, at the
   highest rate both held (no target: what storage, auth and rules cost);
2. chat: 5,000 connections in 2,500 rooms at 1 msg/s each (p99 ≤ 25 ms),
   then the disk and CPU probes again, so that a disk that was quiet for the
   first probe but stalled during the run, or a core that slowed, shows;
3. idle: as many idle connections as the file limit allows, up to 20,000
   (≤ 25 KB of server memory each);
4. churn: connection setups per second (≥ 2,000/s);
5. reconnect storm: 5,000 connections drop at once and resume (≤ 10 s, nothing
   lost).

``--quick`` scales every step down (for a first look, not for the record).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from loadtest.benchdoc import Step, write_doc
from loadtest.cpu import CpuReport
from loadtest.cpu import probe_pinned as cpu_probe_pinned
from loadtest.disk import BLOCK, RATE, DiskReport, default_folder, probe_pinned
from loadtest.procstat import machine
from loadtest.report import Report
from loadtest.runner import RunConfig, cpu_flag_error, cpu_list, run
from loadtest.target import TargetError
from loadtest.worker import Scenario

RAMP_P99_MS = 100.0
# After the ramp's first miss: this many halvings of the gap to the last step that held,
# at rates rounded to REFINE_STEP msg/s.
REFINE_ROUNDS = 2
REFINE_STEP = 250

R = TypeVar("R")


@dataclass(frozen=True)
class BenchSettings:
    server_cpus: str = "0"
    gen_cpus: str = "1"
    procs: int = 1
    quick: bool = False
    reports: Path | None = None
    server_args: tuple[str, ...] = ("--log-level", "warning")


def _config(s: BenchSettings, scenario: Scenario, spawn: str, **kw: object) -> RunConfig:
    base = RunConfig(
        scenario=scenario, spawn=spawn, server_cpus=s.server_cpus, gen_cpus=s.gen_cpus,
        procs=s.procs, server_args=s.server_args if spawn == "confide" else (), progress=True,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _run(s: BenchSettings, name: str, config: RunConfig) -> Report:
    print(f"\n== {name}: {config.scenario} on {config.spawn}, {config.users} users, "
          f"rate {config.rate}, {config.duration_s:.0f} s", file=sys.stderr)
    report = run(config)
    print(report.summary(), file=sys.stderr)
    if s.reports is not None:
        s.reports.mkdir(parents=True, exist_ok=True)
        report.write_json(s.reports / f"{name}.json")
        from loadtest.html import write_html

        write_html(report, s.reports / f"{name}.html")
    return report


def disk(s: BenchSettings, name: str, label: str) -> Step:
    """The disk probe, on the server's CPUs, as a row with no target (and a failure as n/a)."""
    seconds = 3.0 if s.quick else 30.0
    folder = default_folder()
    print(f"\n== {label}: write {BLOCK // 1024} KB and fdatasync {RATE:.0f}/s for "
          f"{seconds:.0f} s in {folder}, CPU {s.server_cpus or 'any'}", file=sys.stderr)
    return _probe(s, name, label, "none: the floor under the p99 targets",
                  lambda: probe_pinned(cpu_list(s.server_cpus), folder, seconds=seconds))


def cpu(s: BenchSettings, name: str, label: str) -> Step:
    """The CPU probe, on the server's CPUs, as a row with no target."""
    seconds = 2.0 if s.quick else 10.0
    print(f"\n== {label}: Python rounds on CPU {s.server_cpus or 'any'} for {seconds:.0f} s",
          file=sys.stderr)
    return _probe(s, name, label, "none: the speed behind every figure",
                  lambda: cpu_probe_pinned(cpu_list(s.server_cpus), seconds))


def _probe(s: BenchSettings, name: str, label: str, target: str,
           run: Callable[[], DiskReport | CpuReport]) -> Step:
    """A probe's row: its brief, its JSON kept with the reports, a failure as n/a."""
    try:
        report = run()
    except OSError as exc:
        print(f"{label} probe failed: {exc}", file=sys.stderr)
        return Step(name, target, f"n/a (the probe failed: {exc.strerror or exc})", None, [])
    print(report.summary(), file=sys.stderr)
    if s.reports is not None:
        s.reports.mkdir(parents=True, exist_ok=True)
        report.write_json(s.reports / f"{label}.json")
    if isinstance(report, CpuReport):
        return Step(name, target, report.brief(), None, [], cpu=report)
    return Step(name, target, report.brief(), None, [], disk=report)


def ramp(s: BenchSettings, spawn: str, users: int, totals: list[int],
         duration: float) -> tuple[int, list[Report]]:
    """The highest delivered msg/s that held (p99, exact, kept up), found by `climb`."""
    def attempt(total: int) -> tuple[float | None, Report]:
        config = _config(s, "chat", spawn, users=users, rate=total / users, duration_s=duration,
                         typing_share=0.1, read_every_s=1.0, drain_s=15.0)
        report = _run(s, f"ramp-{spawn}-{total}", config)
        return (report.delivered_per_s if held(report) else None), report

    return climb(totals, attempt, rounds=0 if s.quick else REFINE_ROUNDS)


def offered(report: Report) -> int:
    """The msg/s a chat step offered in all."""
    return round(report.rate * report.users)


def held(report: Report) -> bool:
    """Whether a ramp step held: p99 within bound, nothing lost, and it kept up."""
    return (report.exact and report.latency_ms.p99 <= RAMP_P99_MS
            and report.delivered_per_s >= 0.95 * offered(report))


def cpu_per_message_us(report: Report) -> float | None:
    """The server's CPU time per delivered message (µs), from the run's mean CPU share."""
    if report.server_cpu_pct is None or report.delivered_per_s <= 0:
        return None
    return report.server_cpu_pct / 100 / report.delivered_per_s * 1e6


def cost_step(confide: Sequence[Report], relay: Sequence[Report]) -> Step:
    """Confide's server CPU per message against the relay's, at the highest offered rate
    that both ramps held: the cost of the same work, which does not hang on the step where
    a run's p99 first crossed its bound (the host's hiccups move that a lot). It still
    moves with the host between the two runs, which are minutes apart."""
    name = "server CPU per message, Confide against the relay"
    target = "none: what storage, auth and rules cost"
    costs: dict[str, dict[int, float]] = {}
    for kind, reports in (("confide", confide), ("relay", relay)):
        costs[kind] = {}
        for r in reports:
            cost = cpu_per_message_us(r)
            if held(r) and cost is not None:
                costs[kind][offered(r)] = cost
    common = set(costs["confide"]) & set(costs["relay"])
    if not common:
        return Step(name, target, "n/a (no rate held by both)", None, [])
    rate = max(common)
    mine, floor = costs["confide"][rate], costs["relay"][rate]
    return Step(f"{name}, at {rate:,} msg/s", target,
                f"{mine:.0f} µs against {floor:.0f} µs (× {mine / floor:.2f})", None, [])


def climb(totals: list[int], attempt: Callable[[int], tuple[float | None, R]],
          rounds: int = REFINE_ROUNDS) -> tuple[int, list[R]]:
    """Offer each rate of `totals` in turn until one does not hold, then halve the gap
    between the last that held and the first that missed, `rounds` times (not below
    REFINE_STEP apart): with two rounds, a ceiling between two coarse steps is found to
    within a quarter of their gap for two more runs, not a run at every fine step.

    `attempt(total)` runs one step: the delivered msg/s if it held, else None, and its
    report. Returns the highest delivered msg/s that held (0 if none) and every report,
    in the order run.
    """
    best = 0
    reports: list[R] = []
    held_at = missed_at = None
    for total in totals:
        delivered, report = attempt(total)
        reports.append(report)
        if delivered is None:
            missed_at = total
            break
        held_at, best = total, int(delivered)
    for _ in range(rounds):
        if held_at is None or missed_at is None:
            break
        mid = round((held_at + missed_at) / 2 / REFINE_STEP) * REFINE_STEP
        if not held_at < mid < missed_at:
            break
        delivered, report = attempt(mid)
        reports.append(report)
        if delivered is None:
            missed_at = mid
        else:
            held_at, best = mid, max(best, int(delivered))
    return best, reports


def fd_budget() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def run_bench(s: BenchSettings) -> list[Step]:
    q = s.quick
    steps: list[Step] = [disk(s, "disk: fdatasync while writing like the store", "disk"),
                         cpu(s, "cpu: the server's core, before anything else", "cpu")]
    # Finer steps where a node's limit falls on this kind of machine (8,000-20,000 msg/s):
    # the figure and the ratio are only as precise as the step that missed.
    totals = [1000, 2000, 4000] if q else [1000, 2000, 4000, 6000, 8000, 9000, 10000, 11000,
                                            12000, 14000, 16000, 18000, 20000, 22500, 25000,
                                            30000]
    ramp_users = 200 if q else 1000
    dur = 5.0 if q else 10.0
    relay_best, relay_reports = ramp(s, "relay", ramp_users, totals, dur)
    confide_best, confide_reports = ramp(s, "confide", ramp_users, totals, dur)
    ratio = confide_best / relay_best if relay_best else None
    steps.append(Step("ramp (relay)", "floor of cost", f"{relay_best:,} msg/s", None,
                      relay_reports))
    steps.append(Step("highest sustained rate, p99 ≤ 100 ms", "≥ 20,000 msg/s",
                      f"{confide_best:,} msg/s", confide_best >= 20_000, confide_reports))
    steps.append(Step("ratio to the relay", "≥ 0.5",
                      "n/a" if ratio is None else f"{math.floor(ratio * 1000) / 1000:.3f}",
                      None if ratio is None else ratio >= 0.5, []))
    steps.append(cost_step(confide_reports, relay_reports))

    users = 500 if q else 5000
    chat = _run(s, "chat-5000", _config(s, "chat", "confide", users=users, rate=1.0,
                                         duration_s=10.0 if q else 30.0, drain_s=15.0))
    steps.append(Step(f"chat: {users:,} connections at 1 msg/s, p99", "≤ 25 ms, nothing lost",
                      f"{chat.latency_ms.p99:.1f} ms, lost {chat.lost}, "
                      f"{'exact' if chat.exact else 'NOT exact'}",
                      chat.latency_ms.p99 <= 25 and chat.exact, [chat]))
    steps.append(disk(s, "disk again, right after the chat step", "disk-after-chat"))
    steps.append(cpu(s, "cpu again, right after the chat step", "cpu-after-chat"))

    idle_n = 1000 if q else min(20_000, (fd_budget() - 500) // 2 * 2)
    idle = _run(s, "idle", _config(s, "idle", "confide", users=idle_n, duration_s=5.0 if q
                                   else 10.0, procs=max(s.procs, 2), open_concurrency=200))
    per_conn = idle.server_rss_per_connection_kb
    steps.append(Step(f"idle: {idle.connections:,} connections, server memory each",
                      "≤ 25 KB (at 20,000)", "n/a" if per_conn is None else f"{per_conn:.1f} KB",
                      None if per_conn is None else per_conn <= 25, [idle]))

    churn = _run(s, "churn", _config(s, "churn", "confide", users=1000, rate=500 if q else 3000,
                                     duration_s=5.0 if q else 10.0, open_concurrency=256))
    steps.append(Step("churn: setups per second (connect, hello, sub, close)", "≥ 2,000/s",
                      f"{churn.setups_per_s:,.0f}/s (setup p99 {churn.setup_ms.p99:.0f} ms)",
                      churn.setups_per_s >= 2000, [churn]))

    storm = _run(s, "storm", _config(s, "reconnect-storm", "confide", users=users, rate=0.5,
                                     duration_s=15.0 if q else 30.0, storm_at_s=5.0,
                                     drain_s=30.0, open_concurrency=1000))
    storm_s = storm.extra.get("storm_s")
    steps.append(Step(f"reconnect storm: {storm.extra.get('storm_dropped', 0):,} resumes",
                      "≤ 10 s, nothing lost",
                      f"{'n/a' if storm_s is None else f'{storm_s:.2f} s'}, lost {storm.lost}, "
                      f"{'exact' if storm.exact else 'NOT exact'}",
                      storm_s is not None and storm_s <= 10 and storm.exact, [storm]))
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--reports", type=Path, help="also keep each step's JSON and HTML here")
    p.add_argument("--quick", action="store_true", help="small steps: a look, not the record")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--gen-cpus", default="1")
    p.add_argument("--procs", type=int, default=1)
    args = p.parse_args(argv)
    bad_cpus = cpu_flag_error(server_cpus=args.server_cpus, gen_cpus=args.gen_cpus)
    if bad_cpus:
        p.error(bad_cpus)
    settings = BenchSettings(args.server_cpus, args.gen_cpus, args.procs, args.quick,
                             args.reports)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        steps = run_bench(settings)
    except TargetError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    write_doc(args.out, steps, machine(), settings, started, fd_budget())
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
