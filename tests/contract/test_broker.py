"""The `Broker` contract: every guarantee of `server.broker.base`, run against each implementation.

Each implementation is a factory in `BACKENDS` that makes the brokers of two nodes of one
deployment (for memory: two `MemoryBroker`s on one `MemoryBus`; for Redis: two brokers
on one server). A Redis broker joins the suite by adding its factory to the list.

Delivery may be asynchronous, so a test waits for what it expects, with a timeout; to
show that something did *not* arrive, it waits for a marker published after it on a
channel the receiver still follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.client import TIMEOUT

from server.broker import Broker, MemoryBroker
from server.broker.base import InProcessBroker
from server.broker.memory import MemoryBus

Pair = tuple[Broker, Broker]


def memory_pair() -> Pair:
    bus = MemoryBus()
    return MemoryBroker(bus), MemoryBroker(bus)


BACKENDS: dict[str, Callable[[], Pair]] = {
    "memory": memory_pair,
    # "redis": redis_pair,  (two brokers on one Redis server started by the test setup)
}


@dataclass
class Inbox:
    """What one node's handler was given, in order."""

    events: list[tuple[str, bytes]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def handler(self, channel: str, payload: bytes) -> None:
        self.events.append((channel, payload))
        self._changed.set()

    def on(self, channel: str) -> list[bytes]:
        return [p for c, p in self.events if c == channel]

    async def wait_for(self, channel: str, payload: bytes, timeout: float = TIMEOUT) -> None:
        """Wait until `payload` has arrived on `channel`."""
        async with asyncio.timeout(timeout):
            while (channel, payload) not in self.events:
                self._changed.clear()
                await self._changed.wait()

    async def wait_count(self, channel: str, n: int, timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while len(self.on(channel)) < n:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Node:
    broker: Broker
    inbox: Inbox


@pytest.fixture(params=sorted(BACKENDS))
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Node, Node]]:
    """Two started nodes of one deployment, each with its own broker and inbox."""
    a, b = (Node(broker, Inbox()) for broker in BACKENDS[request.param]())
    await a.broker.start(a.inbox.handler)
    await b.broker.start(b.inbox.handler)
    try:
        yield a, b
    finally:
        await a.broker.stop()
        await b.broker.stop()


async def test_publish_after_subscribe_reaches_every_subscribed_node(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.broker.subscribe("room:r1")
    await b.broker.subscribe("room:r1")
    await a.broker.publish("room:r1", b"from a")
    await b.broker.publish("room:r1", b"from b")
    for node in (a, b):  # the publisher's own node is a subscriber like any other
        await node.inbox.wait_count("room:r1", 2)
        assert sorted(node.inbox.on("room:r1")) == [b"from a", b"from b"]


async def test_publish_order_per_publisher_per_channel_is_kept(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await b.broker.subscribe("room:r1")
    await a.broker.subscribe("room:r1")
    sent = [f"event {i}".encode() for i in range(1000)]
    for payload in sent:
        await a.broker.publish("room:r1", payload)
    for node in (a, b):
        await node.inbox.wait_count("room:r1", 1000)
        assert node.inbox.on("room:r1") == sent  # in order, none twice


async def test_each_publishers_order_is_kept_when_two_publish_at_once(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.broker.subscribe("room:r1")
    await b.broker.subscribe("room:r1")

    async def publish_all(node: Node, name: bytes) -> None:
        for i in range(300):
            await node.broker.publish("room:r1", name + b"%d" % i)

    await asyncio.gather(publish_all(a, b"a"), publish_all(b, b"b"))
    for node in (a, b):
        await node.inbox.wait_count("room:r1", 600)
        got = node.inbox.on("room:r1")
        for name in (b"a", b"b"):
            assert [p for p in got if p[:1] == name] == [name + b"%d" % i for i in range(300)]


async def test_subscribing_twice_still_delivers_each_event_once(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await b.broker.subscribe("room:r1")
    await b.broker.subscribe("room:r1")
    await a.broker.publish("room:r1", b"once")
    await a.broker.publish("room:r1", b"marker")
    await b.inbox.wait_for("room:r1", b"marker")
    assert b.inbox.on("room:r1") == [b"once", b"marker"]


async def test_no_delivery_after_unsubscribe(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await b.broker.subscribe("room:r1")
    await b.broker.subscribe("room:marker")
    await a.broker.publish("room:r1", b"before")
    await b.inbox.wait_for("room:r1", b"before")
    await b.broker.unsubscribe("room:r1")
    await a.broker.publish("room:r1", b"after")
    await a.broker.publish("room:marker", b"marker")
    await b.inbox.wait_for("room:marker", b"marker")
    assert b.inbox.on("room:r1") == [b"before"]
    # and subscribing again resumes delivery
    await b.broker.subscribe("room:r1")
    await a.broker.publish("room:r1", b"again")
    await b.inbox.wait_for("room:r1", b"again")
    assert b.inbox.on("room:r1") == [b"before", b"again"]


async def test_unsubscribing_a_channel_never_subscribed_is_harmless(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await b.broker.unsubscribe("room:never")
    await b.broker.subscribe("room:r1")
    await a.broker.publish("room:r1", b"still works")
    await b.inbox.wait_for("room:r1", b"still works")


async def test_channels_are_isolated(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.broker.subscribe("room:r1")
    await b.broker.subscribe("room:r2")
    await b.broker.subscribe("room:r1x")
    await a.broker.publish("room:r2", b"for r2")
    await a.broker.publish("room:r1x", b"for r1x")
    await b.broker.publish("room:r1", b"for r1")
    await b.broker.publish("room:r3", b"for nobody")
    await b.inbox.wait_for("room:r1x", b"for r1x")
    await a.inbox.wait_for("room:r1", b"for r1")
    await a.broker.publish("room:r1", b"marker")
    await a.inbox.wait_for("room:r1", b"marker")
    assert a.inbox.events == [("room:r1", b"for r1"), ("room:r1", b"marker")]
    assert b.inbox.events == [("room:r2", b"for r2"), ("room:r1x", b"for r1x")]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=4096))
async def test_payload_bytes_arrive_unchanged(nodes: tuple[Node, Node], payload: bytes) -> None:
    a, b = nodes  # the same two nodes for every example: each looks for its own payload
    await b.broker.subscribe("room:bytes")
    await a.broker.publish("room:bytes", payload)
    await a.broker.publish("room:bytes", b"end " + payload)
    await b.inbox.wait_for("room:bytes", b"end " + payload)
    got = b.inbox.on("room:bytes")
    assert got[-2:] == [payload, b"end " + payload]
    assert all(type(p) is bytes for p in got)
    b.inbox.events.clear()


async def test_stop_ends_delivery(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.broker.subscribe("room:r1")
    await b.broker.subscribe("room:r1")
    await a.broker.publish("room:r1", b"before")
    await b.inbox.wait_for("room:r1", b"before")
    await b.broker.stop()
    await a.broker.publish("room:r1", b"after")
    await a.inbox.wait_for("room:r1", b"after")  # published, and delivered to who follows
    assert b.inbox.on("room:r1") == [b"before"]


# -- the in-process broker's own hand-over -----------------------------------------------


async def test_memory_broker_hands_events_over_unencoded_and_encodes_for_the_others() -> None:
    """A hub of the embedded default gets the publisher's event object itself (no msgpack
    on the way); a broker without a hand-over handler on the same bus still gets bytes,
    encoded once for all of them; brokers not following the channel get nothing."""
    bus = MemoryBus()
    local, plain, other, stranger = (MemoryBroker(bus) for _ in range(4))
    assert isinstance(local, InProcessBroker)
    handed: list[tuple[str, object]] = []
    plain_inbox, other_inbox, stranger_inbox = Inbox(), Inbox(), Inbox()
    await local.start(lambda c, p: pytest.fail("the hand-over handler should get it"))
    local.hand_over(lambda c, e: handed.append((c, e)))
    await plain.start(plain_inbox.handler)
    await other.start(other_inbox.handler)
    await stranger.start(stranger_inbox.handler)
    for broker in (local, plain, other):
        await broker.subscribe("room:a")
    encoded: list[object] = []

    def encode(event: tuple[object, ...]) -> bytes:
        encoded.append(event)
        return repr(event).encode()

    event = ("msg", "a", {"seq": 1}, None, None)
    local.publish_event("room:a", event, encode)
    assert handed == [("room:a", event)] and handed[0][1] is event
    assert plain_inbox.on("room:a") == [repr(event).encode()]
    assert other_inbox.on("room:a") == [repr(event).encode()]
    assert encoded == [event]  # once, however many need bytes
    assert stranger_inbox.events == []
    await local.stop()  # stopped: the hand-over handler is gone with it
    plain.publish_event("room:a", event, encode)
    assert len(handed) == 1
