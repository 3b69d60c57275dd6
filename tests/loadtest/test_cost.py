"""The benchmark's cost figure (`cost_step`): the server's CPU per delivered message,
Confide against the relay, at the highest offered rate both ramps held.

The reports are built by hand so the figure can be checked exactly; the runs that make
real reports are the load tester's, covered by the scenario tests."""

from __future__ import annotations

from loadtest.bench import cost_step, cpu_per_message_us, held
from loadtest.report import GeneratorHealth, Latency, Report

USERS = 1000


def step(target: str, offered: int, cpu_pct: float | None, p99: float = 10.0,
         lost: int = 0, delivered_share: float = 1.0) -> Report:
    """A ramp step's report: `offered` msg/s by USERS users, the server at `cpu_pct`."""
    delivered = offered * 10 * delivered_share  # ten seconds of load
    latency = Latency(p50=1.0, p95=p99 / 2, p99=p99, max=p99 * 2, mean=1.0, count=1)
    return Report(
        scenario="chat", target=target, urls=("http://127.0.0.1:1",), started_at="",
        duration_s=10.0, users=USERS, rooms=USERS // 2, rate=offered / USERS, procs=1,
        encoding="msgpack", supported=True, note="", connections=USERS,
        sent=int(delivered) + lost, acked=int(delivered) + lost, delivered=int(delivered),
        lost=lost, duplicated=0, out_of_order=0, unacked=0, backlog_delivered=0,
        latency_ms=latency, ack_latency_ms=latency, setup_ms=latency,
        sent_per_s=offered, delivered_per_s=delivered / 10, setups_per_s=0.0,
        server_cpu_pct=cpu_pct, server_cpu_pct_max=cpu_pct, server_rss_mb=100.0,
        server_rss_start_mb=50.0, server_rss_per_connection_kb=None, errors=0,
        error_counts={},
        generator=GeneratorHealth(procs=1, cpu_pct_max=50.0, cpu_pct_mean=40.0,
                                  loop_lag_p99_ms=1.0, loop_lag_max_ms=2.0,
                                  schedule_late_share=0.0, limited=False, notes=()),
    )


def test_cpu_per_message_is_the_cores_share_over_the_delivered_rate() -> None:
    assert cpu_per_message_us(step("confide", 10_000, 77.0)) == 77.0  # 0.77 s per 10,000
    assert cpu_per_message_us(step("relay", 20_000, 90.0)) == 45.0
    assert cpu_per_message_us(step("relay", 10_000, None)) is None  # no sample of the server


def test_a_step_holds_only_within_the_p99_bound_exact_and_keeping_up() -> None:
    assert held(step("confide", 10_000, 70.0, p99=99.0))
    assert not held(step("confide", 10_000, 70.0, p99=101.0))
    assert not held(step("confide", 10_000, 70.0, lost=1))
    assert not held(step("confide", 10_000, 70.0, delivered_share=0.9))


def test_compared_at_the_highest_rate_both_ramps_held() -> None:
    relay = [step("relay", 8_000, 44.0), step("relay", 10_000, 54.0),
             step("relay", 14_000, 76.0), step("relay", 16_000, 99.0, p99=150.0)]
    confide = [step("confide", 8_000, 68.0), step("confide", 10_000, 77.0),
               step("confide", 14_000, 92.0, p99=113.7),  # missed: not compared
               step("confide", 12_000, 85.0, lost=3)]  # lost messages: not held either
    figure = cost_step(confide, relay)
    assert figure.name.endswith("at 10,000 msg/s")
    assert figure.measured == "77 µs against 54 µs (× 1.43)"
    assert figure.met is None  # no target: it explains the ratio, it does not pass or fail


def test_no_rate_held_by_both_gives_no_figure() -> None:
    relay = [step("relay", 8_000, 44.0)]
    confide = [step("confide", 8_000, 99.0, p99=300.0)]
    assert cost_step(confide, relay).measured == "n/a (no rate held by both)"
    assert cost_step([step("confide", 8_000, None)], relay).measured.startswith("n/a")
