"""The `Broker` interface: fan-out of room events between the nodes of a deployment.

Guarantees every implementation gives (the contract suite checks each):

- **Node-level subscriptions.** A node subscribes to a channel once, however many of its
  connections follow the room; `subscribe` returns once events published afterwards will
  reach the handler.
- **At most once, in publish order per publisher.** Events published by one node on one
  channel reach each subscribed node in the order published, at most once. An event may be
  lost (a broker restart, a network fault); nothing is invented or duplicated.
- **Not atomic with the store.** Publishing happens after the store commit. Room messages
  therefore carry their `seq`, and the hub heals any loss or reordering from the store
  (a gap in `seq` makes it read the missing messages), so a lost event delays a message
  but never drops it.
- **The handler must not block.** It is called on the event loop with the channel and the
  payload bytes; it only queues work.
- **Payloads are opaque bytes** (the hub's own encoding); brokers never log them.

A broker whose nodes all live in one process may also be an `InProcessBroker`: it hands
a hub the publisher's event object itself, with no encoding on the way. Such an event
is shared by every hub it reaches, so neither the publisher nor a handler may change it
once published.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

Handler = Callable[[str, bytes], None]
Event = tuple[Any, ...]
EventHandler = Callable[[str, Event], None]


class Broker(Protocol):
    """Pub/sub between nodes. See the module docstring for what it guarantees."""

    async def start(self, handler: Handler) -> None:
        """Connect; from now on events of subscribed channels go to `handler`."""

    async def stop(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...


@runtime_checkable
class InProcessBroker(Broker, Protocol):
    """A `Broker` that can hand events over unencoded (see the module docstring)."""

    def hand_over(self, handler: EventHandler) -> None:
        """Events given to `publish_event` reach `handler` as they are."""

    def publish_event(self, channel: str, event: Event,
                      encode: Callable[[Event], bytes]) -> None:
        """`publish` an event not yet encoded; subscribers without a `hand_over` handler
        get `encode(event)`. Handlers have run when this returns."""
