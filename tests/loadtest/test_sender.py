"""A user's sending schedule (loadtest.user._Sender) on the worker's Timers, with a fake socket.

The smoke runs cover the schedule at a few messages a second for a few
seconds; these cover what they rarely reach: a heartbeat on its own, a retry
on its own, a connection that closes, a send that fails, and the timer heap.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, cast

import msgpack
import pytest

from loadtest import fastws
from loadtest.tally import Flow, Histogram, Meter, bucket_of
from loadtest.user import ChatSettings, ChatUser, Gate, Member, Timers, _Sender
from loadtest.wire import Codec


class FakeSocket:
    """What _Sender uses of a ClientConnection: ``state`` and ``send_many``."""

    def __init__(self) -> None:
        self.state = fastws.OPEN
        self.writes: list[list[dict[str, Any]]] = []
        self.fail: Exception | None = None

    @property
    def is_open(self) -> bool:
        return self.state == fastws.OPEN

    def send_many(self, messages: list[bytes | str]) -> None:
        if self.fail is not None:
            raise self.fail
        if self.state != fastws.OPEN:
            raise fastws.ConnectionClosedError(None, None)
        self.writes.append([msgpack.unpackb(cast(bytes, m)) for m in messages])

    def frames(self) -> list[dict[str, Any]]:
        return [f for write in self.writes for f in write]


def make_user(rate: float, heartbeat_s: float = 25.0, typing: float = 0.0) -> ChatUser:
    meter = Meter()
    settings = ChatSettings(rate, 0.5, typing, 0.0, 0, heartbeat_s)
    return ChatUser(Member("u1", "t", "r1", "ws://127.0.0.1:1/ws"), Flow(meter.totals),
                    Flow(meter.totals), settings, meter, Codec("msgpack"), random.Random(7),
                    Gate(2, 10))


def start(user: ChatUser, ws: FakeSocket) -> _Sender:
    user.gate.go.set()
    return _Sender(user, cast(fastws.ClientConnection, ws))


async def test_messages_go_out_at_the_rate_numbered_and_pending() -> None:
    user, ws = make_user(rate=100, typing=0.5), FakeSocket()
    sender = start(user, ws)
    await asyncio.sleep(0.3)
    user.gate.stop.set()
    await asyncio.sleep(0.02)
    assert not sender.done.done() or sender.done.result() is None
    sends = [f for f in ws.frames() if f["t"] == "send"]
    assert 10 <= len(sends) <= 45
    assert [f["cmid"] for f in sends] == [f"m{n}" for n in range(1, len(sends) + 1)]
    assert sorted(user.pending) == list(range(1, len(sends) + 1))
    assert user.meter.scheduled == len(sends) and user.meter.frames_out == len(ws.frames())
    typing = [f for f in ws.frames() if f["t"] == "typing"]
    assert 0 < len(typing) < len(sends)
    for write in ws.writes:  # a typing frame goes out in the same write as its message
        if write[0]["t"] == "typing":
            assert write[1]["t"] == "send"


async def test_a_heartbeat_alone_is_sent_and_counted() -> None:
    user, ws = make_user(rate=0, heartbeat_s=0.05), FakeSocket()
    sender = start(user, ws)
    await asyncio.sleep(0.3)
    assert not sender.done.done()
    pings = [f for f in ws.frames() if f["t"] == "ping"]
    assert 2 <= len(pings) <= 7 and len(pings) == len(ws.frames())
    assert user.meter.frames_out == len(pings)
    sender.cancel()


async def test_a_retry_alone_resends_the_same_cmid_at_its_time() -> None:
    user, ws = make_user(rate=0), FakeSocket()
    n = user.flow.next_n()
    user.pending[n] = time.monotonic_ns()
    user.retry.append((time.monotonic() + 0.05, n))
    sender = start(user, ws)  # a resumed session: what is pending goes out at once
    assert [f["cmid"] for f in ws.frames()] == ["m1"]
    await asyncio.sleep(0.02)
    assert len(ws.writes) == 1 and user.retry
    await asyncio.sleep(0.08)  # the retry's time is the next wake-up (no message, no heartbeat)
    assert [[f["cmid"] for f in write] for write in ws.writes] == [["m1"], ["m1"]]
    assert not user.retry and user.meter.frames_out == 2 and user.meter.scheduled == 0
    sender.cancel()


async def test_sending_ends_when_the_connection_closes_or_a_send_fails() -> None:
    user, ws = make_user(rate=100), FakeSocket()
    sender = start(user, ws)
    await asyncio.sleep(0.05)
    ws.state = fastws.CLOSING
    await asyncio.sleep(0.1)
    assert sender.done.done() and sender.done.result() is None

    user, ws = make_user(rate=100), FakeSocket()
    ws.fail = ValueError("a bug")
    sender = start(user, ws)
    await asyncio.sleep(0.1)
    assert sender.done.done()
    with pytest.raises(ValueError, match="a bug"):
        sender.done.result()


async def test_cancel_stops_the_wake_ups() -> None:
    user, ws = make_user(rate=200), FakeSocket()
    sender = start(user, ws)
    await asyncio.sleep(0.05)
    sender.cancel()
    sent = len(ws.frames())
    await asyncio.sleep(0.05)
    assert len(ws.frames()) == sent and sender.done.cancelled()


async def test_timers_run_in_time_order_and_not_early() -> None:
    timers = Timers()
    calls: list[tuple[str, float]] = []
    now = time.monotonic()

    def call(name: str, due: float) -> None:
        calls.append((name, time.monotonic() - due))

    for name, delay in (("c", 0.06), ("a", 0.02), ("b", 0.04), ("a2", 0.02)):
        timers.at(now + delay, lambda n=name, d=now + delay: call(n, d))  # type: ignore[misc]
    timers.at(now + 0.01, lambda: timers.at(now, lambda: call("from a wake-up", now)))
    await asyncio.sleep(0.15)
    assert [c[0] for c in calls] == ["from a wake-up", "a", "a2", "b", "c"]
    assert all(late >= 0 for _, late in calls)


def test_the_inlined_bucket_matches_bucket_of() -> None:
    for us in [-5, 0, 1, 31, 32, 33, 63, 64, 1000, 12345, 10**6, 10**9]:
        h = Histogram()
        h.record_ns(us * 1000)
        assert list(h.counts) == [bucket_of(us)]
