"""The load tester's counting: flows, receivers and histograms, without a network."""

from __future__ import annotations

import pytest

from loadtest.tally import Flow, Histogram, Receiver, Totals
from loadtest.wire import cmid_for, n_from_cmid, read_stamp, stamp_body, ws_url


def test_every_acked_message_received_once_in_order_counts_exact() -> None:
    live = Totals()
    flow, rx = Flow(live), Receiver()
    for seq in range(1, 6):
        n = flow.next_n()
        assert flow.on_ack(n)
        assert flow.on_receive(n, rx.check(seq, n))
    t = flow.settle()
    assert (t.sent, t.acked, t.delivered, t.lost, t.duplicated, t.unacked) == (5, 5, 5, 0, 0, 0)
    assert live.out_of_order == 0
    assert live.outstanding() == 0


def test_acked_but_never_received_is_lost_and_a_second_receipt_is_a_duplicate() -> None:
    live = Totals()
    flow, rx = Flow(live), Receiver()
    for _ in range(3):
        flow.on_ack(flow.next_n())
    assert flow.on_receive(1, rx.check(1, 1))
    assert not flow.on_receive(1, rx.check(1, 1))
    t = flow.settle()
    assert (t.delivered, t.lost, t.duplicated) == (1, 2, 1)


def test_a_receipt_behind_an_earlier_one_is_out_of_order() -> None:
    live = Totals()
    flow, rx = Flow(live), Receiver()
    for _ in range(2):
        flow.on_ack(flow.next_n())
    flow.on_receive(2, rx.check(2, 2))
    flow.on_receive(1, rx.check(1, 1))
    assert live.out_of_order == 1
    assert flow.settle().lost == 0


def test_sent_but_neither_acked_nor_received_is_unacked_not_lost() -> None:
    flow = Flow(Totals())
    flow.next_n()
    t = flow.settle()
    assert (t.unacked, t.lost) == (1, 0)


@pytest.mark.parametrize("ms", [0.05, 1.0, 7.3, 25.0, 480.0])
def test_histogram_percentile_within_four_percent(ms: float) -> None:
    h = Histogram()
    for _ in range(100):
        h.record_ns(int(ms * 1e6))
    assert h.percentile_ms(99) == pytest.approx(ms, rel=0.04)
    merged = Histogram.from_state(h.to_state())
    merged.merge(h)
    assert merged.count == 200


def test_histogram_p99_of_a_spread_sees_the_tail() -> None:
    h = Histogram()
    for i in range(1, 1001):
        h.record_ns(i * 1_000_000)  # 1..1000 ms
    assert h.percentile_ms(50) == pytest.approx(500, rel=0.04)
    assert h.percentile_ms(99) == pytest.approx(990, rel=0.04)
    assert h.max_us == 1_000_000


def test_body_stamp_and_cmid_round_trip() -> None:
    n, sent = read_stamp(stamp_body(42, padding=10)) or (0, 0)
    assert n == 42 and sent > 0
    assert n_from_cmid(cmid_for(42)) == 42
    assert read_stamp("hello") is None
    assert ws_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/ws"
