"""Where Confide keeps what must survive: rooms, messages, read marks (and later sessions).

`Store` is the interface; `SQLiteStore` the embedded default. A distributed
implementation (PostgreSQL) drops in behind the same interface and the same contract
tests (`tests/contract/test_store.py`).
"""

from server.store.base import Appended, RoomRecord, Store, StoredMessage

__all__ = ["Appended", "RoomRecord", "Store", "StoredMessage"]
