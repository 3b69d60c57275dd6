"""Instructions per message: the node's cost in a unit that the host does not move.

    python -m loadtest.instructions [--users 100] [--rate 0.5] [--seconds 10 40] [--json]

Every time figure of the benchmark moves with the host: the same code used 52 % of
a core for a load on one host and 82 % on another, and alternating runs on one host
drift by ten points within minutes. A change that saves 5 % cannot be seen that way.
This counts instructions instead. It runs a node on the embedded default under
valgrind's callgrind, which counts the instructions each thread executes in user
space, and drives it with the `chat` scenario (the load tester in a process of its
own, on the node's URL). The count does not move with the host's speed, so two
versions of the code can be compared under the same settings, on an idle machine.

It runs the same load twice, for a short and a long time, and reports the
difference in instructions divided by the difference in delivered messages: the
node's start-up, the provisioning of rooms and tokens, the connections' setup and
the drain at the end cancel out, and what remains is the cost of a message with
everything the load brings with it (typing frames, read receipts, heartbeats).

What it does not show:
- Kernel time (socket calls, fsync): callgrind sees user space only.
- A loaded node. valgrind runs the node about fifty times slower, so the load must
  stay low (the default is 50 messages a second). At that load a commit carries
  about one message and a pass of the event loop about one frame, so per-commit
  and per-pass costs weigh more than on a busy node. Compare versions with it;
  size a deployment with the benchmark.
- A busy machine's count. How many messages share a commit or a pass depends on how
  fast the node runs, so run it on an otherwise idle machine.

Thread 1 is the event loop's. The others are the store's writer, its checkpointer
and readers, and uvloop's helpers, numbered in the order they started.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtest.procstat import interpreter
from loadtest.target import TargetError, spawn_confide

# valgrind starts the interpreter slowly, and stops it slowly too (it writes its counts)
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 300.0
RAISED_RATE_LIMIT = 1_000_000


@dataclass(frozen=True)
class Run:
    """One run: what the node's threads executed, and what the load tester counted."""

    seconds: float
    threads: dict[int, int]  # thread number -> instructions while counting
    sent: int
    delivered: int
    exact: bool


@dataclass(frozen=True)
class Report:
    users: int
    rate: float
    short: Run
    long: Run
    per_message: dict[str, float]  # "loop", "others", "all", and "thread N"
    python: str  # version and path: counts compare only under the same interpreter

    def summary(self) -> str:
        lines = [
            f"instructions per delivered message, {self.users} users at {self.rate:g} msg/s each"
            f" (runs of {self.short.seconds:g} s and {self.long.seconds:g} s: "
            f"{self.long.delivered - self.short.delivered:,} messages apart), "
            f"Python {self.python}",
            f"  loop (thread 1)  {self.per_message['loop']:>12,.0f}",
            f"  other threads    {self.per_message['others']:>12,.0f}",
            f"  all threads      {self.per_message['all']:>12,.0f}",
        ]
        for name, value in self.per_message.items():
            if name.startswith("thread ") and name != "thread 1":
                lines.append(f"    {name:<14} {value:>12,.0f}")
        return "\n".join(lines)


def thread_totals(folder: Path, stem: str) -> dict[int, int]:
    """Instructions per thread from callgrind's files `<stem>-NN` (and `<stem>.K-NN` for
    dumps), summed over the dumps of each thread."""
    totals: dict[int, int] = {}
    for path in folder.iterdir():
        name = path.name
        if not name.startswith(stem):
            continue
        head, sep, number = name.rpartition("-")
        if not sep or not number.isdigit() or not head.startswith(stem):
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("totals:"):
                    count = int(line.split()[1])
                    totals[int(number)] = totals.get(int(number), 0) + count
                    break
    return totals


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise TargetError(f"`{tool}` was not found: install valgrind (Debian: apt-get install "
                          "valgrind)")
    return found


def run_once(users: int, rate: float, seconds: float, seed: int) -> Run:
    """One node under callgrind, one `chat` load against it; counted from the moment the
    node answers until it has stopped."""
    valgrind = _need("valgrind")
    control = _need("callgrind_control")
    with tempfile.TemporaryDirectory(prefix="confide-icount-") as tmp:
        folder = Path(tmp)
        report_path = folder / "report.json"
        log = folder / "node.log"
        callgrind = [valgrind, "--tool=callgrind", "--instr-atstart=no",
                     "--separate-threads=yes", f"--callgrind-out-file={folder / 'cg'}"]
        # stopped cleanly (SIGTERM) when the block ends: callgrind then writes its counts
        with spawn_confide(rate_limit=RAISED_RATE_LIMIT, extra_args=("--log-level", "warning"),
                           log=log, prefix=callgrind, start_timeout_s=START_TIMEOUT_S,
                           stop_timeout_s=STOP_TIMEOUT_S) as node:
            assert node.pid is not None and node.admin_token is not None
            subprocess.run([control, "--instr=on", str(node.pid)], check=True,
                           capture_output=True, timeout=120)
            load = subprocess.run(
                [sys.executable, "-m", "loadtest", "chat", "--url", node.url, "--admin-token",
                 node.admin_token, "--users", str(users), "--rate", str(rate), "--duration",
                 str(seconds), "--seed", str(seed), "--drain", "120", "--quiet",
                 "--report", str(report_path)],
                capture_output=True, text=True, timeout=seconds + 600)
            if not report_path.exists():
                raise TargetError(f"the load tester wrote no report (exit {load.returncode})"
                                  f": {load.stderr.strip()[-500:]}")
        report = json.loads(report_path.read_text())
        threads = thread_totals(folder, "cg")
        if not threads or 1 not in threads:
            raise TargetError("callgrind wrote no counts for the node's threads "
                              f"(see its log: {log.read_text()[-500:]})")
        return Run(seconds, threads, int(report["sent"]), int(report["delivered"]),
                   bool(report["exact"]))


def measure(users: int = 100, rate: float = 0.5, seconds: tuple[float, float] = (10.0, 40.0),
            seed: int = 7) -> Report:
    short_s, long_s = seconds
    if not 0 < short_s < long_s:
        raise ValueError("the two run lengths must be positive, the first the shorter")
    if users < 2 or users % 2:
        raise ValueError("users must be an even number of at least 2 (two to a room)")
    if rate <= 0:
        raise ValueError("rate must be positive")
    short = run_once(users, rate, short_s, seed)
    long = run_once(users, rate, long_s, seed)
    messages = long.delivered - short.delivered
    if messages <= 0:
        raise TargetError(f"the long run delivered {long.delivered} messages, the short one "
                          f"{short.delivered}: nothing to divide by")
    per: dict[str, float] = {}
    for thread in sorted(set(short.threads) | set(long.threads)):
        per[f"thread {thread}"] = (long.threads.get(thread, 0)
                                   - short.threads.get(thread, 0)) / messages
    per["loop"] = per["thread 1"]
    per["others"] = sum(v for k, v in per.items() if k.startswith("thread ") and k != "thread 1")
    per["all"] = per["loop"] + per["others"]
    return Report(users, rate, short, long, per,
                  f"{platform.python_version()} ({interpreter()})")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100, help="users, two to a room")
    p.add_argument("--rate", type=float, default=0.5, help="messages a second per user")
    p.add_argument("--seconds", type=float, nargs=2, default=(10.0, 40.0),
                   metavar=("SHORT", "LONG"), help="the two runs' lengths")
    p.add_argument("--seed", type=int, default=7, help="the load tester's seed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        short_s, long_s = args.seconds
        report = measure(args.users, args.rate, (short_s, long_s), args.seed)
    except ValueError as exc:
        p.error(str(exc))  # exits 2
    except (TargetError, subprocess.SubprocessError, OSError) as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report), indent=2) if args.json else report.summary())
    if not (report.short.exact and report.long.exact):
        print("instructions: a run lost, repeated or reordered messages", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
