"""The in-process broker of the embedded default: one node, no network.

Every `MemoryBroker` made with the same `MemoryBus` sees the others' events, which lets
tests run several hubs in one process the way several nodes would run over Redis.
"""

from __future__ import annotations

from collections.abc import Callable

from server.broker.base import Event, EventHandler, Handler


class MemoryBus:
    """Channels shared by the brokers of one process."""

    def __init__(self) -> None:
        self.brokers: list[MemoryBroker] = []


class MemoryBroker:
    """`InProcessBroker` within one process: delivery is a direct call, in publish order,
    never lost."""

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self._bus = bus or MemoryBus()
        self._handler: Handler | None = None
        self._events: EventHandler | None = None
        self._channels: set[str] = set()

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._bus.brokers.append(self)

    async def stop(self) -> None:
        if self in self._bus.brokers:
            self._bus.brokers.remove(self)
        self._handler = None
        self._events = None
        self._channels.clear()

    async def publish(self, channel: str, payload: bytes) -> None:
        self.publish_nowait(channel, payload)

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        for broker in self._bus.brokers:
            handler = broker._handler
            if handler is not None and channel in broker._channels:
                handler(channel, payload)

    def hand_over(self, handler: EventHandler) -> None:
        """In-process only: events given to `publish_event` reach `handler` as they are.

        Every event of the embedded default would otherwise be encoded by its publisher
        and decoded again by the same process a moment later.
        """
        self._events = handler

    def publish_event(self, channel: str, event: Event,
                      encode: Callable[[Event], bytes]) -> None:
        """`publish` an event not yet encoded: brokers with a `hand_over` handler get the
        event itself (so they must not change it), the others its `encode`d bytes."""
        payload: bytes | None = None
        for broker in self._bus.brokers:
            if channel not in broker._channels:
                continue
            if broker._events is not None:
                broker._events(channel, event)
            elif broker._handler is not None:
                if payload is None:
                    payload = encode(event)
                broker._handler(channel, payload)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
