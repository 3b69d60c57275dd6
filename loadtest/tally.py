"""Counting, pure and mergeable: latency histograms, per-flow delivery ledgers and error counters.

Theory of operation. A *flow* is one sender in one room. The sender numbers its
messages n = 1, 2, 3... (``cmid`` ``m<n>``). The flow keeps one byte per message
for "acknowledged" and one for "how many times the other member received it".
From those, at the end:

- ``sent``: messages the sender sent (distinct n),
- ``acked``: distinct n acknowledged by the server,
- ``delivered``: distinct n the other member received,
- ``lost``: acknowledged but never received,
- ``duplicated``: receipts beyond the first (the same n twice),
- ``out_of_order``: a first receipt whose n is below one already received, or
  whose room ``seq`` is not above the last one the receiver saw,
- ``unacked``: sent but neither acknowledged nor received (a failed send).

Latencies are kept in a log-linear histogram of microseconds (32 sub-buckets
per power of two: about 3 % resolution), which merges across processes by
adding counts. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

SUB_BITS = 5
SUB = 1 << SUB_BITS


def bucket_of(us: int) -> int:
    """The histogram bucket of a value in microseconds (values below zero count as zero)."""
    if us < SUB:
        return max(us, 0)
    shift = us.bit_length() - SUB_BITS - 1
    return (shift + 1) * SUB + ((us >> shift) - SUB)


def bucket_value(index: int) -> float:
    """The middle of a bucket, in microseconds."""
    if index < SUB:
        return float(index)
    shift = index // SUB - 1
    mant = index % SUB + SUB
    low = mant << shift
    high = ((mant + 1) << shift) - 1
    return (low + high) / 2


class Histogram:
    """A mergeable latency histogram (microseconds in, milliseconds out)."""

    __slots__ = ("count", "counts", "max_us", "total_us")

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.max_us = 0
        self.total_us = 0

    def record_ns(self, ns: int) -> None:
        us = ns // 1000
        if us < SUB:  # bucket_of(us), inlined: this runs twice per message
            bucket = us if us > 0 else 0
        else:
            shift = us.bit_length() - SUB_BITS - 1
            bucket = (shift + 1) * SUB + ((us >> shift) - SUB)
        self.counts[bucket] += 1
        self.count += 1
        self.total_us += max(us, 0)
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)
        self.count += other.count
        self.total_us += other.total_us
        self.max_us = max(self.max_us, other.max_us)

    def percentile_ms(self, p: float) -> float:
        """The p-th percentile (0..100) in ms; 0.0 for an empty histogram."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_value(index), float(self.max_us)) / 1000
        return self.max_us / 1000

    def mean_ms(self) -> float:
        return self.total_us / self.count / 1000 if self.count else 0.0

    def to_state(self) -> tuple[dict[int, int], int, int, int]:
        return dict(self.counts), self.count, self.max_us, self.total_us

    @classmethod
    def from_state(cls, state: tuple[dict[int, int], int, int, int]) -> Histogram:
        h = cls()
        counts, h.count, h.max_us, h.total_us = state
        h.counts.update(counts)
        return h

    def buckets_ms(self) -> list[tuple[float, int]]:
        """``(bucket middle in ms, count)`` in increasing order, for plotting."""
        return [(bucket_value(i) / 1000, self.counts[i]) for i in sorted(self.counts)]


@dataclass
class Totals:
    """The delivery counts of a set of flows (see the module docstring)."""

    sent: int = 0
    acked: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unacked: int = 0

    def add(self, other: Totals) -> None:
        self.sent += other.sent
        self.acked += other.acked
        self.delivered += other.delivered
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.out_of_order += other.out_of_order
        self.unacked += other.unacked

    def outstanding(self) -> int:
        """Acks plus deliveries still expected for what was sent."""
        return 2 * self.sent - self.acked - self.delivered


class Flow:
    """One sender in one room: what it sent, what the server acknowledged, what arrived."""

    __slots__ = ("_acked", "_recv", "live", "sent")

    def __init__(self, live: Totals) -> None:
        self.sent = 0
        self._acked = bytearray()
        self._recv = bytearray()
        self.live = live  # running totals shared by every flow of a worker

    def next_n(self) -> int:
        self.sent += 1
        self._acked.append(0)
        self._recv.append(0)
        self.live.sent += 1
        return self.sent

    def on_ack(self, n: int) -> bool:
        """Record an ack of message n; False for one that was never sent."""
        if not 1 <= n <= self.sent:
            return False
        if not self._acked[n - 1]:
            self._acked[n - 1] = 1
            self.live.acked += 1
        return True

    def is_acked(self, n: int) -> bool:
        return 1 <= n <= self.sent and bool(self._acked[n - 1])

    def on_receive(self, n: int, in_order: bool) -> bool:
        """Record the other member's receipt of n; True for a first receipt (count latency)."""
        if not 1 <= n <= self.sent:
            self.live.out_of_order += 1  # a message from the future: never sent
            return False
        count = self._recv[n - 1]
        self._recv[n - 1] = min(count + 1, 255)
        if count:
            self.live.duplicated += 1
            return False
        self.live.delivered += 1
        if not in_order:
            self.live.out_of_order += 1
        return True

    def settle(self) -> Totals:
        """The final counts of this flow."""
        t = Totals(sent=self.sent)
        for acked, recv in zip(self._acked, self._recv, strict=True):
            t.acked += acked
            t.delivered += recv > 0
            t.duplicated += max(recv - 1, 0)
            if acked and not recv:
                t.lost += 1
            if not acked and not recv:
                t.unacked += 1
        return t


class Receiver:
    """What one member has received in its room: the last seq and, per sender, the last n."""

    __slots__ = ("last_n", "last_seq")

    def __init__(self) -> None:
        self.last_seq = 0
        self.last_n = 0

    def check(self, seq: int, n: int) -> bool:
        """Advance on a receipt; False when it arrived out of order."""
        in_order = seq > self.last_seq and n > self.last_n
        self.last_seq = max(self.last_seq, seq)
        self.last_n = max(self.last_n, n)
        return in_order


class ErrorCounts:
    """Named error counters (``rate_limited``, ``close_4408``, ``connect_failed``...)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def total(self) -> int:
        return sum(self.counts.values())


class Meter:
    """Everything one worker process counts, with interval histograms that are taken and reset."""

    def __init__(self) -> None:
        self.totals = Totals()
        self.errors = ErrorCounts()
        self.latency = Histogram()  # send → other member's receipt, this interval
        self.latency_all = Histogram()  # the whole run, up to the last interval taken
        self.ack = Histogram()  # send → ack, this interval
        self.ack_all = Histogram()
        self.setup = Histogram()  # connect → subbed, this interval
        self.setup_all = Histogram()
        self.connections = 0
        self.setups = 0
        self.scheduled = 0
        self.schedule_late = 0
        self.backlog_delivered = 0
        self.frames_in = 0
        self.frames_out = 0

    def record_setup(self, ns: int) -> None:
        self.setups += 1
        self.setup.record_ns(ns)

    def take_interval(self) -> tuple[Histogram, Histogram, Histogram]:
        """The interval histograms (latency, ack, setup), replaced by empty ones."""
        taken = self.latency, self.ack, self.setup
        self.latency_all.merge(self.latency)
        self.ack_all.merge(self.ack)
        self.setup_all.merge(self.setup)
        self.latency, self.ack, self.setup = Histogram(), Histogram(), Histogram()
        return taken
