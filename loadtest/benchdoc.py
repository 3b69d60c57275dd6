"""Writing the benchmark's figures into docs/benchmarks.md, between markers, keeping the prose.

The generated part sits between ``<!-- bench:begin -->`` and
``<!-- bench:end -->``; everything outside the markers (how to read the figures,
what limits the server) is written by people and left as it is. A missing file
is created with the markers and a short header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest.cpu import CpuReport
from loadtest.disk import STALL_MS, DiskReport
from loadtest.report import Report

if TYPE_CHECKING:
    from loadtest.bench import BenchSettings

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


@dataclass(frozen=True)
class Step:
    name: str
    target: str
    measured: str
    met: bool | None  # None: no target, or not measurable here
    reports: Sequence[Report]  # the load runs behind the figure (none for a disk probe)
    disk: DiskReport | None = None  # a disk probe's full figures
    cpu: CpuReport | None = None  # a CPU probe's


def _mark(met: bool | None) -> str:
    return "–" if met is None else "yes" if met else "**no**"


def _opt(v: float | None, fmt: str = "{:.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _run_row(r: Report) -> str:
    lat = r.latency_ms
    gen = r.generator
    limited = "; ".join(gen.notes) if gen.limited else "no"
    offered = r.rate if r.scenario == "churn" else 0.0 if r.scenario == "idle" else r.rate * r.users
    return (f"| {r.scenario} | {r.target} | {r.connections:,} | {offered:,.0f} | "
            f"{r.delivered_per_s:,.0f} | {lat.p50:.1f} / {lat.p99:.1f} / {lat.max:.0f} | "
            f"{r.sent:,} / {r.delivered:,} / {r.lost} / {r.duplicated} / {r.out_of_order} | "
            f"{r.errors} | {_opt(r.server_cpu_pct)} % / {_opt(r.server_rss_mb)} MB | "
            f"{_opt(gen.cpu_pct_mean)} % | {limited} |")


def _disk_row(name: str, d: DiskReport) -> str:
    delayed = ", ".join(f"> {t} ms {v:.2f} %" for t, v in sorted(d.delayed_share_pct.items()))
    return (f"- {name}: {d.fsyncs:,} fdatasyncs of {d.block:,} B at {d.rate:g}/s in "
            f"{d.seconds:.1f} s in `{d.folder}`; p50 {d.p50_ms:.2f} / p99 {d.p99_ms:.2f} / "
            f"p99.9 {d.p999_ms:.1f} / max {d.max_ms:.0f} ms; stalled (fsyncs over "
            f"{STALL_MS:.0f} ms) {d.stalled_share_pct:.2f} % of the time; messages delayed by "
            "the disk alone "
            f"{delayed}")


def _interpreter(machine: dict[str, object]) -> str:
    """Where the interpreter lives, which tells a distribution's build from pyenv's."""
    path = machine.get("python_path")
    return f" (`{path}`)" if path else ""


def render(steps: Sequence[Step], machine: dict[str, object], settings: BenchSettings,
           started: str, fd_limit: int) -> str:
    lines = [
        BEGIN,
        "",
        f"Measured {started} with `python -m loadtest.bench"
        f"{' --quick' if settings.quick else ''}`.",
        "",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GB memory, Linux {machine['kernel']}, "
        f"Python {machine['python']}{_interpreter(machine)}.",
        f"- Server pinned to CPU {settings.server_cpus}, generator to CPU {settings.gen_cpus} "
        f"({settings.procs} generator process(es); 2 for the idle step), uvloop, msgpack.",
        "- Confide: `confide serve` on the embedded default (SQLite, every message stored "
        "durably before its ack), rate limits raised to 1,000,000/s "
        "(`CONFIDE_RATE_LIMIT_PER_S`, `CONFIDE_RATE_LIMIT_BURST`), "
        f"`{' '.join(settings.server_args)}`.",
        f"- Open-file limit (hard): {fd_limit:,}; it caps the idle step.",
        "",
        "| figure | target | measured | met |",
        "|---|---|---|---|",
    ]
    for step in steps:
        lines.append(f"| {step.name} | {step.target} | {step.measured} | {_mark(step.met)} |")
    lines += [
        "",
        "Every run (latency: send → the other member's receipt; counts: "
        "sent / delivered / lost / duplicated / out of order):",
        "",
        "| scenario | target | conns | offered (msg/s; churn: setups/s) | delivered msg/s | "
        "p50 / p99 / max ms | counts | errors | server CPU / RSS | generator CPU | "
        "generator limited |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        for r in step.reports:
            lines.append(_run_row(r))
    extra = [(s.name, r) for s in steps for r in s.reports if set(r.extra) - {"drained"}]
    if extra:
        lines += ["", "Scenario figures:", ""]
        for name, r in extra:
            figures = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in r.extra.items())
            lines.append(f"- {name} ({r.scenario}): {figures}")
    probes = [(s.name, s.disk) for s in steps if s.disk is not None]
    if probes:
        lines += ["", "Disk probes (`python -m loadtest.disk`: a write and an `fdatasync` "
                  "per slot into a preallocated file, as the store commits):", ""]
        lines += [_disk_row(name, d) for name, d in probes]
    lines += ["", END]
    return "\n".join(lines)


HEADER = """# Benchmarks

Figures from `python -m loadtest.bench --out docs/benchmarks.md`; see
`confide-loadtest --help` for the scenarios.

"""


def write_doc(path: Path, steps: Sequence[Step], machine: dict[str, object],
              settings: BenchSettings, started: str, fd_limit: int) -> None:
    block = render(steps, machine, settings, started, fd_limit)
    text = path.read_text() if path.exists() else HEADER + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
