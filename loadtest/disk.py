"""The disk probe: how long fdatasync takes on this disk when written to like the store.

    python -m loadtest.disk [--folder DIR] [--seconds S] [--rate R] [--block B] [--json]

The embedded store (SQLite in WAL mode, ``synchronous=FULL``) fsyncs its WAL on
every group commit, and a message's latency includes its commit; so a disk that
stalls now and then puts a floor under the latency percentiles that no server
code can lift. :func:`probe` measures that floor with nothing but the disk:

- a file of 64 MB is reserved with ``os.posix_fallocate`` and then written
  through once (an ext4 or XFS extent that was only reserved stays
  "unwritten" until its first write, and converting it is a metadata change
  that fdatasync would have to journal; SQLite reuses its WAL in place the same
  way), and fsynced, before the clock starts;
- then ``block`` bytes are written at ``rate`` writes per second round-robin
  over the file (no growth, no metadata change), each followed by
  ``os.fdatasync``, whose duration is timed with ``time.perf_counter``;
- the writes keep an absolute schedule (slot k at ``start + k / rate``). A
  write whose fsync made it late is followed at once by one write (the slot
  that fell due), and the slots that fell inside the stall are skipped: the
  store, too, gathers whatever arrived during a stalled commit into one next
  commit instead of committing many times in a row. So the fsync count is
  ``rate × seconds`` less the slots swallowed by stalls;
- the file is removed afterwards, also on error.

The probe writes into ``folder``; by default the system temporary directory,
where :func:`loadtest.target.spawn_confide` makes a spawned node's data
directory, so the probe and the server's store share a filesystem.

Reading the report (:class:`DiskReport`): the percentiles are of single
fsyncs; ``stalled_share_pct`` is the share of wall time spent in fsyncs over
10 ms; ``delayed_share_pct[T]`` estimates the share of messages that would wait
over T ms because of the disk alone (:func:`delayed_share_pct`). A delayed
share above 1 % at 25 ms means that this disk alone puts the p99 above 25 ms.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_BYTES = 64 * 1024 * 1024
# The store at 5,000 msg/s: about 450 group commits a second, and about 12 KB of WAL per
# message (2.8 pages of 4 KB), so about 130 KB per commit, 60 MB/s.
RATE = 450.0
BLOCK = 128 * 1024
STALL_MS = 10.0  # an fsync longer than this counts as a stall
DELAY_THRESHOLDS_MS = (25, 100)  # the p99 targets of the chat step and of the ramp
FILL_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DiskReport:
    """What :func:`probe` measured (durations in ms, shares in percent); ``--json`` prints it."""

    folder: str
    seconds: float  # wall time: the schedule's length, or until the last fsync ended if later
    rate: float  # writes per second asked for
    block: int  # bytes per write
    fsyncs: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    stalled_share_pct: float  # share of wall time in fsyncs over STALL_MS
    delayed_share_pct: dict[int, float]  # threshold ms → share of messages waiting longer

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write_json(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    def brief(self) -> str:
        """One line for the benchmark's table."""
        (first, share), *rest = sorted(self.delayed_share_pct.items())
        more = "".join(f", {_pct(v)} % > {t} ms" for t, v in rest)
        return (f"p50 {self.p50_ms:.1f} / p99 {self.p99_ms:.1f} / max {self.max_ms:.0f} ms; "
                f"stalled {_pct(self.stalled_share_pct)} % of the time; "
                f"{_pct(share)} % of messages would wait > {first} ms{more} "
                "from the disk alone")

    def summary(self) -> str:
        """A few lines for the terminal."""
        delayed = "  ".join(f"> {t} ms {_pct(v)} %"
                            for t, v in sorted(self.delayed_share_pct.items()))
        return "\n".join([
            f"disk in {self.folder}: {self.fsyncs} fdatasyncs of {self.block} B writes "
            f"in {self.seconds:.1f} s (asked {self.rate:g}/s)",
            f"  fdatasync p50 {self.p50_ms:.2f} ms  p99 {self.p99_ms:.2f}  "
            f"p99.9 {self.p999_ms:.2f}  max {self.max_ms:.1f}",
            f"  stalled (fsyncs over {STALL_MS:.0f} ms) {_pct(self.stalled_share_pct)} % "
            "of the time",
            f"  messages delayed by the disk alone: {delayed}",
        ])


def _pct(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(round(q * len(ordered) / 100, 6)))  # 99.9 % of 1000 is 999
    return ordered[min(rank, len(ordered)) - 1]


def delayed_share_pct(durations_s: Sequence[float], wall_s: float, threshold_ms: float) -> float:
    """The share (percent) of messages that wait over ``threshold_ms`` for the disk alone.

    Messages arrive uniformly in time and each waits for the fsync under way to
    complete: one arriving ``t`` into an fsync of duration ``d`` waits about
    ``d - t``, so it waits over the threshold when ``t < d - threshold``. Summed
    over the fsyncs and divided by the wall time: ``Σ max(0, d - threshold) / wall``.
    """
    threshold_s = threshold_ms / 1000
    return sum(max(0.0, d - threshold_s) for d in durations_s) / wall_s * 100


def stalled_share_pct(durations_s: Sequence[float], wall_s: float,
                      stall_ms: float = STALL_MS) -> float:
    """The share (percent) of wall time spent in fsyncs longer than ``stall_ms``."""
    return sum(d for d in durations_s if d > stall_ms / 1000) / wall_s * 100


def summarize(durations_s: Sequence[float], wall_s: float, *, folder: str = "",
              rate: float = 0.0, block: int = 0) -> DiskReport:
    """The report of a list of fsync durations (seconds) over ``wall_s`` seconds."""
    if not durations_s or wall_s <= 0:
        raise ValueError("a disk report needs at least one fsync and a positive wall time")
    ordered = sorted(durations_s)
    return DiskReport(
        folder=folder,
        seconds=round(wall_s, 3),
        rate=rate,
        block=block,
        fsyncs=len(ordered),
        p50_ms=round(percentile(ordered, 50) * 1000, 3),
        p99_ms=round(percentile(ordered, 99) * 1000, 3),
        p999_ms=round(percentile(ordered, 99.9) * 1000, 3),
        max_ms=round(ordered[-1] * 1000, 3),
        stalled_share_pct=round(stalled_share_pct(ordered, wall_s), 3),
        delayed_share_pct={t: round(delayed_share_pct(ordered, wall_s, t), 3)
                           for t in DELAY_THRESHOLDS_MS},
    )


def default_folder() -> Path:
    """Where a spawned node keeps its data: the system temporary directory."""
    return Path(tempfile.gettempdir())


def check(folder: Path, seconds: float, rate: float, block: int, size: int) -> None:
    """Raise ValueError naming the first argument :func:`probe` cannot work with."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, not {seconds}")
    if not rate > 0:
        raise ValueError(f"rate must be positive, not {rate}")
    if not 0 < block <= size:
        raise ValueError(f"block must be between 1 and {size} bytes, not {block}")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not an existing folder")


def probe(folder: Path, *, seconds: float, rate: float = RATE, block: int = BLOCK,
          size: int = FILE_BYTES) -> DiskReport:
    """Write ``block`` bytes ``rate`` times a second into ``folder``, fdatasync each; time them.

    ``size`` is the preallocated file's length (64 MB; smaller for tests). The
    preparation (reserving, writing through and fsyncing the file) is not timed.
    Raises ValueError for arguments it cannot work with and OSError from the disk.
    """
    check(folder, seconds, rate, block, size)
    slots = size // block
    fd, name = tempfile.mkstemp(prefix="confide-disk-", suffix=".probe", dir=folder)
    try:
        _prepare(fd, slots * block)
        durations, wall = _timed_loop(fd, seconds, rate, block, slots)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    return summarize(durations, wall, folder=str(folder), rate=rate, block=block)


def _prepare(fd: int, size: int) -> None:
    os.posix_fallocate(fd, 0, size)
    zeros = bytes(FILL_CHUNK)
    for offset in range(0, size, FILL_CHUNK):
        os.pwrite(fd, zeros[: size - offset], offset)
    os.fsync(fd)  # the allocation and the written extents, once, before the clock


def _timed_loop(fd: int, seconds: float, rate: float, block: int,
                slots: int) -> tuple[list[float], float]:
    payload = os.urandom(block)
    durations: list[float] = []
    start = time.perf_counter()
    end = start + seconds
    k = 0
    while (due := start + k / rate) < end:
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        os.pwrite(fd, payload, (len(durations) % slots) * block)
        began = time.perf_counter()
        os.fdatasync(fd)
        done = time.perf_counter()
        durations.append(done - began)
        # the next slot on the grid; after a stall, the one that fell due (at once), not all
        k = max(k + 1, int((done - start) * rate))
    return durations, max(seconds, time.perf_counter() - start)


def probe_pinned(cpus: Sequence[int], folder: Path, *, seconds: float, rate: float = RATE,
                 block: int = BLOCK, size: int = FILE_BYTES) -> DiskReport:
    """:func:`probe` in a child process pinned to ``cpus`` (in this process when empty).

    The benchmark pins the server to its own CPU and may itself run on the
    generator's; the probe runs where the server's store would.
    """
    if not cpus:
        return probe(folder, seconds=seconds, rate=rate, block=block, size=size)
    check(folder, seconds, rate, block, size)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=mp.get_context("spawn"),
        initializer=os.sched_setaffinity, initargs=(0, tuple(cpus)),
    ) as pool:
        job = pool.submit(probe, folder, seconds=seconds, rate=rate, block=block, size=size)
        return job.result()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.disk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=default_folder(),
                   help="where to write (default: the system temp dir, where --spawn puts "
                        "the node's data)")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to write")
    p.add_argument("--rate", type=float, default=RATE, help="writes (and fdatasyncs) per second")
    p.add_argument("--block", type=int, default=BLOCK, help="bytes per write")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        check(args.folder, args.seconds, args.rate, args.block, FILE_BYTES)
    except ValueError as exc:
        p.error(str(exc))  # exits 2
    try:
        report = probe(args.folder, seconds=args.seconds, rate=args.rate, block=args.block)
    except OSError as exc:
        print(f"disk: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
