"""Reading a process's CPU and memory from /proc: for the server under test and for our own workers.

CPU is ``utime + stime`` of ``/proc/PID/stat`` (in clock ticks), summed over the
process and its descendants, turned into percent of one core between two
samples; memory is ``VmRSS`` of ``/proc/PID/status``. On a system without
/proc every reading is None and the report says so (no figure rather than a
made-up one).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds used by one process so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def children_of(pid: int) -> list[int]:
    """Every descendant of a process (for servers that run worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass(frozen=True)
class Usage:
    cpu_pct: float | None  # percent of one core since the previous sample
    rss_bytes: int | None


class ProcessSampler:
    """Samples one process tree (or a set of single processes) every time it is asked."""

    def __init__(self, pids: Iterable[int], tree: bool = True) -> None:
        self.roots = list(pids)
        self.tree = tree
        self._last: tuple[float, float] | None = None
        self._members = self._scan()

    def _scan(self) -> list[int]:
        pids = list(self.roots)
        if self.tree:
            for root in self.roots:
                pids += children_of(root)
        return pids

    def rescan(self) -> None:
        self._members = self._scan()

    def sample(self, now: float) -> Usage:
        cpu = 0.0
        rss = 0
        alive = False
        for pid in self._members:
            c = cpu_seconds(pid)
            r = rss_bytes(pid)
            if c is not None:
                alive = True
                cpu += c
            rss += r or 0
        if not alive:
            return Usage(None, None)
        pct = None
        if self._last is not None and now > self._last[0]:
            pct = max(0.0, (cpu - self._last[1]) / (now - self._last[0]) * 100)
        self._last = (now, cpu)
        return Usage(pct, rss)

    def per_process_cpu(self) -> dict[int, float | None]:
        return {pid: cpu_seconds(pid) for pid in self.roots}


def machine() -> dict[str, object]:
    """nproc, CPU model and memory of this machine, for the benchmark's record."""
    model = platform.processor() or "unknown"
    mem_kb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_path": interpreter(),
    }


def interpreter() -> str:
    """The path of the interpreter under this venv (the nodes' too): it tells builds apart,
    and a distribution's (PGO and LTO) runs the node with less CPU than pyenv's."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))
