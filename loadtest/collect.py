"""The parent's bookkeeping during a run: worker ticks, per-second points, samples and the verdict.

Every second :meth:`Collector.second` turns what the workers reported since the
previous second into a :class:`~loadtest.report.Point` (rates, latency
percentiles of that second, the server's CPU and memory, the busiest worker's
CPU and loop lag) and the progress line. It also decides, second by second and
for the whole run, whether the generator itself was the bottleneck: a worker
at ≥ 90 % of a core, an event loop more than 50 ms late, or more than 1 % of
the sends starting over 100 ms after their slot. The report says so rather
than passing a slow generator off as a slow server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from loadtest.procstat import ProcessSampler, cpu_seconds
from loadtest.report import GeneratorHealth, Latency, Point, Report
from loadtest.tally import ErrorCounts, Histogram, Totals

if TYPE_CHECKING:
    from loadtest.runner import RunConfig
    from loadtest.target import Node
    from loadtest.worker import WorkerFinal, WorkerTick

CPU_LIMIT_PCT = 90.0
LAG_LIMIT_MS = 50.0
LATE_LIMIT = 0.01


class Collector:
    def __init__(self, config: RunConfig, node: Node, urls: tuple[str, ...], started_at: str,
                 rooms: int) -> None:
        self.config = config
        self.node = node
        self.urls = urls
        self.started_at = started_at
        self.rooms = rooms
        pid = node.pid or config.server_pid
        self.server = ProcessSampler([pid]) if pid else None
        self.latest: dict[int, WorkerTick] = {}
        self.lat = Histogram()
        self.setup = Histogram()
        self.points: list[Point] = []
        self.notes: list[str] = []
        self.worker_pids: list[int] = []
        self.worker_cpu: dict[int, tuple[float, float]] = {}
        self.t0 = time.monotonic()
        self.go_t: float | None = None
        self.prev = (self.t0, 0, 0, 0, 0, 0)  # t, sent, delivered, setups, scheduled, late
        self.rss_start: int | None = None
        self.rss_go: int | None = None
        self.connections_go = 0
        self.peak_connections = 0
        self.limited_seconds = 0
        self.active_seconds = 0
        self.busiest_cpu: list[float] = []

    # -- during the run -----------------------------------------------------------

    def sample_start(self) -> None:
        if self.server is not None:
            self.server.rescan()
            usage = self.server.sample(time.monotonic())
            self.rss_start = usage.rss_bytes

    def watch_workers(self, pids: list[int]) -> None:
        self.worker_pids = pids

    def mark_go(self) -> None:
        self.go_t = time.monotonic()
        if self.server is not None:
            self.rss_go = self.server.sample(self.go_t).rss_bytes

    def note(self, text: str) -> None:
        self.notes.append(text)

    def tick(self, tick: WorkerTick) -> None:
        self.latest[tick.index] = tick
        self.lat.merge(Histogram.from_state(tick.latency))
        self.setup.merge(Histogram.from_state(tick.setup))

    def _connections(self) -> int:
        return sum(t.connections for t in self.latest.values())

    def second(self, now: float, connecting: bool) -> str:
        """Close one second: a timeline point and the progress line."""
        ticks = list(self.latest.values())
        totals = Totals()
        errors = 0
        setups = scheduled = late = 0
        lag = 0.0
        for t in ticks:
            totals.add(t.totals)
            errors += sum(t.errors.values())
            setups += t.setups
            scheduled += t.scheduled
            late += t.schedule_late
            lag = max(lag, t.loop_lag_max_ms)
        p_t, p_sent, p_deliv, p_setups, p_sched, p_late = self.prev
        dt = max(now - p_t, 1e-6)
        self.prev = (now, totals.sent, totals.delivered, setups, scheduled, late)
        usage = self.server.sample(now) if self.server is not None else None
        gen_cpu = self._busiest_worker_cpu(now)
        conns = self._connections()
        self.peak_connections = max(self.peak_connections, conns)
        late_share = (late - p_late) / max(scheduled - p_sched, 1)
        limited = (gen_cpu or 0.0) >= CPU_LIMIT_PCT or lag > LAG_LIMIT_MS or late_share > LATE_LIMIT
        if not connecting:
            self.active_seconds += 1
            self.limited_seconds += limited
            if gen_cpu is not None:
                self.busiest_cpu.append(gen_cpu)
        point = Point(
            t=round(now - (self.go_t or now), 2),
            connections=conns,
            sent_per_s=round((totals.sent - p_sent) / dt, 1),
            delivered_per_s=round((totals.delivered - p_deliv) / dt, 1),
            setups_per_s=round((setups - p_setups) / dt, 1),
            p50=round(self.lat.percentile_ms(50), 3),
            p95=round(self.lat.percentile_ms(95), 3),
            p99=round(self.lat.percentile_ms(99), 3),
            errors=errors,
            server_cpu_pct=None if usage is None or usage.cpu_pct is None
            else round(usage.cpu_pct, 1),
            server_rss_mb=None if usage is None or usage.rss_bytes is None
            else round(usage.rss_bytes / 2**20, 1),
            generator_cpu_pct=None if gen_cpu is None else round(gen_cpu, 1),
            loop_lag_ms=round(lag, 1),
            generator_limited=limited,
        )
        self.points.append(point)
        self.lat, self.setup = Histogram(), Histogram()
        return self._line(point, connecting, totals)

    def _busiest_worker_cpu(self, now: float) -> float | None:
        busiest: float | None = None
        for pid in self.worker_pids:
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            last = self.worker_cpu.get(pid)
            self.worker_cpu[pid] = (now, cpu)
            if last is not None and now > last[0]:
                pct = (cpu - last[1]) / (now - last[0]) * 100
                busiest = pct if busiest is None else max(busiest, pct)
        return busiest

    def _line(self, p: Point, connecting: bool, totals: Totals) -> str:
        phase = "connecting" if connecting else f"{p.t:5.0f}s"
        srv = "" if p.server_cpu_pct is None else f" | server {p.server_cpu_pct:.0f}% " \
            f"{p.server_rss_mb:.0f}MB"
        gen = "" if p.generator_cpu_pct is None else f" | gen {p.generator_cpu_pct:.0f}%"
        flag = " GENERATOR-LIMITED" if p.generator_limited and not connecting else ""
        return (f"[{self.config.scenario} {phase}] conns {p.connections} | "
                f"sent {p.sent_per_s:.0f}/s deliv {p.delivered_per_s:.0f}/s "
                f"(total {totals.delivered}) | p99 {p.p99:.1f}ms | errors {p.errors}"
                f"{srv}{gen} lag {p.loop_lag_ms:.0f}ms{flag}")

    # -- the end ------------------------------------------------------------------

    def unsupported(self, reason: str) -> Report:
        return self.report([], supported=False, note=reason)

    def report(self, finals: list[WorkerFinal], supported: bool = True, note: str = "") -> Report:
        cfg = self.config
        totals = Totals()
        errors = ErrorCounts()
        lat, ack, setup, lag = Histogram(), Histogram(), Histogram(), Histogram()
        scheduled = late = setups = backlog = 0
        extra: dict[str, Any] = {}
        for f in finals:
            totals.add(f.totals)
            for k, v in f.errors.items():
                errors.add(k, v)
            lat.merge(Histogram.from_state(f.latency))
            ack.merge(Histogram.from_state(f.ack))
            setup.merge(Histogram.from_state(f.setup))
            lag.merge(Histogram.from_state(f.loop_lag))
            scheduled += f.scheduled
            late += f.schedule_late
            setups += f.setups
            backlog += f.backlog_delivered
            _merge_extra(extra, f.extra)
        window = [p for p in self.points if 0 < p.t <= cfg.duration_s + 0.5]
        cpus = [p.server_cpu_pct for p in window if p.server_cpu_pct is not None]
        rss = [p.server_rss_mb for p in self.points if p.server_rss_mb is not None]
        per_conn = None
        rss_window = [p.server_rss_mb for p in window if p.server_rss_mb is not None]
        if (cfg.scenario == "idle" and self.rss_start is not None and rss_window
                and self.connections_go):
            grown = max(rss_window) * 2**20 - self.rss_start
            per_conn = round(grown / self.connections_go / 1024, 2)
        health = self._health(lag, scheduled, late)
        duration = max(cfg.duration_s, 1e-6)
        return Report(
            scenario=cfg.scenario, target=self.node.kind, urls=self.urls,
            started_at=self.started_at, duration_s=cfg.duration_s, users=2 * self.rooms,
            rooms=self.rooms, rate=cfg.rate, procs=len(self.worker_pids) or cfg.procs,
            encoding=cfg.encoding, supported=supported,
            note="; ".join(x for x in [note, *self.notes] if x),
            connections=max(self.peak_connections, self.connections_go),
            sent=totals.sent, acked=totals.acked, delivered=totals.delivered, lost=totals.lost,
            duplicated=totals.duplicated, out_of_order=totals.out_of_order,
            unacked=totals.unacked, backlog_delivered=backlog,
            latency_ms=Latency.of(lat), ack_latency_ms=Latency.of(ack), setup_ms=Latency.of(setup),
            sent_per_s=round(totals.sent / duration, 1),
            delivered_per_s=round(totals.delivered / duration, 1),
            setups_per_s=round(extra.get("setups_per_s", setups / duration), 1),
            server_cpu_pct=round(sum(cpus) / len(cpus), 1) if cpus else None,
            server_cpu_pct_max=max(cpus) if cpus else None,
            server_rss_mb=max(rss) if rss else None,
            server_rss_start_mb=None if self.rss_start is None
            else round(self.rss_start / 2**20, 1),
            server_rss_per_connection_kb=per_conn,
            errors=errors.total(), error_counts=dict(errors.counts), generator=health,
            extra=extra, timeline=tuple(self.points),
            latency_histogram=tuple((round(v, 4), c) for v, c in lat.buckets_ms()),
        )

    def _health(self, lag: Histogram, scheduled: int, late: int) -> GeneratorHealth:
        notes = []
        late_share = late / scheduled if scheduled else 0.0
        cpu_max = max(self.busiest_cpu) if self.busiest_cpu else None
        cpu_mean = sum(self.busiest_cpu) / len(self.busiest_cpu) if self.busiest_cpu else None
        if cpu_mean is not None and cpu_mean >= CPU_LIMIT_PCT * 0.95:
            notes.append(f"a generator process averaged {cpu_mean:.0f}% of a core")
        if lag.percentile_ms(99) > LAG_LIMIT_MS / 2:
            notes.append(f"generator event loop lag p99 {lag.percentile_ms(99):.0f} ms")
        if late_share > LATE_LIMIT:
            notes.append(f"{late_share:.1%} of sends started >100 ms behind schedule")
        if self.active_seconds and self.limited_seconds / self.active_seconds > 0.2:
            notes.append(f"limited in {self.limited_seconds} of {self.active_seconds} seconds")
        return GeneratorHealth(
            procs=len(self.worker_pids), cpu_pct_max=None if cpu_max is None
            else round(cpu_max, 1), cpu_pct_mean=None if cpu_mean is None else round(cpu_mean, 1),
            loop_lag_p99_ms=round(lag.percentile_ms(99), 2),
            loop_lag_max_ms=round(lag.max_us / 1000, 2),
            schedule_late_share=round(late_share, 4), limited=bool(notes), notes=tuple(notes),
        )


def _merge_extra(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        old = into.get(key)
        if key == "drained":
            into[key] = bool(value) and (old is None or bool(old))
        elif key == "storm_s":
            into[key] = None if value is None or (key in into and old is None) else \
                max(value, old or 0.0)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = (old or 0) + value
        else:
            into[key] = value
