"""How nodes tell each other what happened in a room: the `Broker` interface and its default."""

from server.broker.base import Broker, Handler
from server.broker.memory import MemoryBroker

__all__ = ["Broker", "Handler", "MemoryBroker"]
