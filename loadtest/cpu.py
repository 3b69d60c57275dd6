"""The CPU probe: how fast the server's core runs Python at the moment.

    python -m loadtest.cpu [--seconds S] [--cpus LIST] [--json]

The benchmark's machine is a virtual one, and the speed of its cores moves with
what else its host runs: the same load took 49 % of the server's core in one
benchmark and 57 % in the next, an hour apart, with the same code. Every
latency figure follows the core's headroom, so a run on a slow core reads worse
than the server is. :func:`probe` measures that speed with nothing but the
core: it repeats a fixed round of the hub's own kind of work (a `msg` frame
packed and unpacked with msgpack, and copied) in slices of 100 ms and counts
the rounds of each slice. The report gives the median slice as rounds a second,
and its slowest tenth and slowest slice, where a host that takes the core away
for a moment shows. Two benchmark runs are comparable when their probes agree.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

SLICE_S = 0.1
_FRAME = {"t": "msg", "room": "room-00042", "seq": 1234, "from": "client-00042",
          "kind": "text", "body": "lt1 1234 5678901234", "ts": "2026-11-28T03:00:00.000Z",
          "cmid": "m1234"}
_BATCH = 200  # rounds between two looks at the clock


@dataclass(frozen=True)
class CpuReport:
    seconds: float
    slices: int
    p50_per_s: float  # rounds a second in the median slice
    p10_per_s: float  # ... in the slice at the slowest tenth
    min_per_s: float  # ... in the slowest slice
    max_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def brief(self) -> str:
        return (f"{self.p50_per_s:,.0f} rounds/s (slowest tenth of 100-ms slices "
                f"{self.p10_per_s:,.0f}, slowest {self.min_per_s:,.0f})")

    def summary(self) -> str:
        return (f"cpu: {self.slices} slices of {SLICE_S * 1000:.0f} ms in {self.seconds:.1f} s: "
                f"median {self.p50_per_s:,.0f} rounds/s, slowest tenth {self.p10_per_s:,.0f}, "
                f"slowest {self.min_per_s:,.0f}, fastest {self.max_per_s:,.0f}")


def summarize(rates: Sequence[float], seconds: float) -> CpuReport:
    """The report of the slices' rates (rounds a second, one per slice)."""
    if not rates:
        raise ValueError("no slice was measured")
    ordered = sorted(rates)
    n = len(ordered)
    return CpuReport(seconds=round(seconds, 3), slices=n,
                     p50_per_s=round(ordered[(n - 1) // 2], 1),
                     p10_per_s=round(ordered[(n - 1) // 10], 1),
                     min_per_s=round(ordered[0], 1), max_per_s=round(ordered[-1], 1))


def _round() -> None:
    dict(msgpack.unpackb(msgpack.packb(_FRAME)))


def probe(seconds: float) -> CpuReport:
    """Run rounds for ``seconds`` on this process's CPUs; their rate per 100-ms slice."""
    if not seconds >= SLICE_S:
        raise ValueError(f"seconds must be at least {SLICE_S}, not {seconds}")
    rates: list[float] = []
    began = time.perf_counter()
    end = began + seconds
    while True:
        start = time.perf_counter()
        if start + SLICE_S > end:
            break
        rounds = 0
        now = start
        while now - start < SLICE_S:
            for _ in range(_BATCH):
                _round()
            rounds += _BATCH
            now = time.perf_counter()
        rates.append(rounds / (now - start))
    return summarize(rates, time.perf_counter() - began)


def probe_pinned(cpus: Sequence[int], seconds: float) -> CpuReport:
    """:func:`probe` in a child process pinned to ``cpus`` (in this process when empty)."""
    if not cpus:
        return probe(seconds)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=mp.get_context("spawn"),
        initializer=os.sched_setaffinity, initargs=(0, tuple(cpus)),
    ) as pool:
        return pool.submit(probe, seconds).result()


def main(argv: list[str] | None = None) -> int:
    from loadtest.runner import cpu_list

    p = argparse.ArgumentParser(prog="python -m loadtest.cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="how long to measure")
    p.add_argument("--cpus", default="", help="taskset-style CPU list to run on (e.g. 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    try:
        report = probe_pinned(cpu_list(args.cpus), args.seconds)
    except (ValueError, OSError) as exc:
        print(f"cpu probe: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
