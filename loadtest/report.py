"""The report of a run, as frozen dataclasses, and its JSON form.

The JSON report holds at least the fields the issue names: ``connections``,
``sent``, ``delivered``, ``lost``, ``duplicated``, ``out_of_order``,
``latency_ms`` (``p50``, ``p95``, ``p99``, ``max``), ``delivered_per_s``,
``server_cpu_pct``, ``server_rss_mb`` and ``errors``; plus the generator's
health (``generator.limited`` and why), the scenario's own figures (``extra``:
``storm_s``, ``setups_per_s``...) and a per-second ``timeline`` that the HTML
report plots.

``sent`` counts distinct messages sent, ``delivered`` distinct messages the
other member received; after the drain they are equal unless something was
lost or a send failed (``unacked``). ``latency_ms`` is send → the other member's
receipt for messages received live; messages received in a resume backlog are
counted in ``backlog_delivered`` and kept out of the latency figures (their
delay is the time the member was away).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.tally import Histogram


@dataclass(frozen=True)
class Latency:
    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    count: int

    @classmethod
    def of(cls, h: Histogram) -> Latency:
        return cls(
            p50=round(h.percentile_ms(50), 3),
            p95=round(h.percentile_ms(95), 3),
            p99=round(h.percentile_ms(99), 3),
            max=round(h.max_us / 1000, 3),
            mean=round(h.mean_ms(), 3),
            count=h.count,
        )


@dataclass(frozen=True)
class Point:
    """One second of the run."""

    t: float
    connections: int
    sent_per_s: float
    delivered_per_s: float
    setups_per_s: float
    p50: float
    p95: float
    p99: float
    errors: int
    server_cpu_pct: float | None
    server_rss_mb: float | None
    generator_cpu_pct: float | None
    loop_lag_ms: float
    generator_limited: bool


@dataclass(frozen=True)
class GeneratorHealth:
    procs: int
    cpu_pct_max: float | None  # the busiest worker, percent of one core, highest second
    cpu_pct_mean: float | None  # the busiest worker, mean over the run
    loop_lag_p99_ms: float
    loop_lag_max_ms: float
    schedule_late_share: float
    limited: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    scenario: str
    target: str  # "confide", "relay" or "external"
    urls: tuple[str, ...]
    started_at: str
    duration_s: float
    users: int
    rooms: int
    rate: float
    procs: int
    encoding: str
    supported: bool
    note: str
    connections: int
    sent: int
    acked: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    unacked: int
    backlog_delivered: int
    latency_ms: Latency
    ack_latency_ms: Latency
    setup_ms: Latency
    sent_per_s: float
    delivered_per_s: float
    setups_per_s: float
    server_cpu_pct: float | None
    server_cpu_pct_max: float | None
    server_rss_mb: float | None
    server_rss_start_mb: float | None
    server_rss_per_connection_kb: float | None
    errors: int
    error_counts: dict[str, int]
    generator: GeneratorHealth
    extra: dict[str, Any] = field(default_factory=dict)
    timeline: tuple[Point, ...] = ()
    latency_histogram: tuple[tuple[float, int], ...] = ()

    @property
    def exact(self) -> bool:
        """Every message sent was delivered exactly once and in order."""
        return (
            self.sent == self.delivered
            and self.lost == 0
            and self.duplicated == 0
            and self.out_of_order == 0
        )

    def to_dict(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["exact"] = self.exact
        return value

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self) -> str:
        """A few lines for the terminal."""
        if not self.supported:
            return f"{self.scenario}: not supported by server: {self.note}"
        lat = self.latency_ms
        lines = [
            f"{self.scenario} against {self.target} {','.join(self.urls)}: "
            f"{self.connections} connections, {self.duration_s:.0f} s, {self.procs} procs",
            f"  sent {self.sent}  delivered {self.delivered}  lost {self.lost}  "
            f"duplicated {self.duplicated}  out_of_order {self.out_of_order}  "
            f"unacked {self.unacked}  errors {self.errors}",
            f"  delivered {self.delivered_per_s:.0f}/s  latency p50 {lat.p50:.1f} ms  "
            f"p95 {lat.p95:.1f}  p99 {lat.p99:.1f}  max {lat.max:.1f}",
            f"  server cpu {_opt(self.server_cpu_pct, '%')} rss {_opt(self.server_rss_mb, ' MB')}",
        ]
        if self.setup_ms.count:
            rate = f"  {self.setups_per_s:.0f}/s" if self.scenario == "churn" else ""
            lines.append(f"  setup (connect → subbed) p50 {self.setup_ms.p50:.1f} ms "
                         f"p99 {self.setup_ms.p99:.1f} ms{rate}")
        if self.server_rss_per_connection_kb is not None:
            per_conn = self.server_rss_per_connection_kb
            lines.append(f"  server memory per connection {per_conn:.1f} KB")
        for key, value in self.extra.items():
            lines.append(f"  {key}: {value}")
        if self.error_counts:
            lines.append("  errors: " + ", ".join(f"{k}={v}" for k, v in
                                                  sorted(self.error_counts.items())))
        if self.generator.limited:
            lines.append("  GENERATOR-LIMITED: " + "; ".join(self.generator.notes))
        lines.append("  exact: " + ("yes" if self.exact else "NO"))
        return "\n".join(lines)


def _opt(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.1f}{unit}"


def load_json(path: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(path.read_text())
    return value
