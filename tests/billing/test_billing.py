"""Charge delivery (`server.billing`) against a real webhook receiver and a real SQLite store.

The receiver is a Starlette app served by uvicorn on a free port in the test's event loop;
it records every request and answers from a per-charge script (200 once the script is
used up). Signatures are checked here with `hmac` alone, as a receiver would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.client import MS, TIMEOUT

from rooms.ledger import Charge, ChargeKind, charge
from server.billing import ChargeDelivery, backoff_ms
from server.ids import RoomId, SessionId, UserId
from server.records import dumps
from server.store.sqlite import SQLiteStore

SECRET = b"whsec-test-secret"
BACKOFF_MS = max(1, round(20 * MS * 1000))  # the first retry after 20 ms (scaled)
ROOM = RoomId("r-billing")
CLIENT = UserId("u-client-7f3a")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def a_charge(kind: ChargeKind = "late_cancel", session: str = "s-1", minute: int = 0,
             amount_cents: int = 12_000) -> Charge:
    rule = "R7" if kind == "purchase" else "R14"
    at = datetime(2025, 3, 3, 14, minute, tzinfo=UTC)
    return charge(kind, ROOM, CLIENT, amount_cents, at, rule, SessionId(session))


async def add(store: SQLiteStore, c: Charge) -> bool:
    return await store.transact(lambda tx: tx.add_charge(c.key, c.room, dumps(c), now_ms()))


def row(path: Path, key: str) -> tuple[int, int | None, int]:
    """(attempts, delivered_ms, next_try_ms) of a charge, read straight from the file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        found = conn.execute("SELECT attempts, delivered_ms, next_try_ms FROM charges"
                             " WHERE key = ?", (key,)).fetchone()
    assert found is not None
    return found[0], found[1], found[2]


def verify(secret: bytes, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does with `Confide-Signature`: HMAC over "<t>.<body>", fresh `t`."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    t = int(parts["t"])
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - t) <= tolerance_s


# -- the receiver -------------------------------------------------------------------------


@dataclass
class Received:
    key: str
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic seconds


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)  # per key, then 200
    stall_first: set[str] = field(default_factory=set)  # keys whose first request hangs
    latency_s: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        self.requests.append(Received(key, dict(request.headers), body, time.monotonic()))
        self._arrived.set()
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight[key])
        try:
            if key in self.stall_first:
                self.stall_first.discard(key)
                await self.released.wait()
            if self.latency_s:
                await asyncio.sleep(self.latency_s)  # a slow receiver, not a wait
            script = self.answers.get(key)
            status = script.pop(0) if script else 200
            headers = {"retry-after": "2"} if status == 429 else None
            return Response(status_code=status, headers=headers)
        finally:
            self.in_flight[key] -= 1

    async def wait_requests(self, n: int, timeout: float = TIMEOUT) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    def of(self, key: str) -> list[Received]:
        return [r for r in self.requests if r.key == key]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = Starlette(routes=[Route("/hooks/charges", recv.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    recv.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/charges"
    config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # start-up, as in support.nodes
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield recv
    finally:
        recv.released.set()
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def delivery(store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver, *,
             idle_s: float = 60.0, timeout_s: float = 5.0) -> ChargeDelivery:
    """A delivery to `receiver` with fast retries and no jitter."""
    return ChargeDelivery(store, http, receiver.url, SECRET.decode(), idle_s=idle_s,
                          timeout_s=timeout_s, backoff_base_ms=BACKOFF_MS,
                          jitter=lambda: 0.0)


@contextlib.asynccontextmanager
async def running(d: ChargeDelivery) -> AsyncIterator[ChargeDelivery]:
    """`d.run()` as the app's lifespan runs it: one task, cancelled at the end."""
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- delivery -----------------------------------------------------------------------------


async def test_r14_late_cancel_charge_is_delivered_once_signed(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    c = a_charge("late_cancel")
    assert await add(store, c)
    d = delivery(store, http, receiver)

    assert await d.deliver_due() == 1
    (sent,) = receiver.requests
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["idempotency-key"] == c.key
    assert verify(SECRET, sent.headers["confide-signature"], sent.body)
    assert not verify(b"another-secret", sent.headers["confide-signature"], sent.body)
    assert not verify(SECRET, sent.headers["confide-signature"], sent.body + b" ")
    assert json.loads(sent.body) == {
        "event": "charge", "key": c.key, "kind": "late_cancel", "room": ROOM,
        "client": CLIENT, "amount_cents": 12_000, "at": "2025-03-03T14:00:00+00:00",
        "rule": "R14", "session": "s-1"}

    attempts, delivered_ms, _ = row(store.path, c.key)
    assert (attempts, delivered_ms is not None) == (1, True)
    assert await d.deliver_due() == 0  # delivered: never sent again
    assert len(receiver.requests) == 1
    assert await store.next_charge_ms() is None


async def test_r14_no_show_charge_is_retried_after_500s_until_delivered(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    c = a_charge("no_show")
    receiver.answers[c.key] = [500, 500]
    assert await add(store, c)
    d = delivery(store, http, receiver)

    async with running(d):
        sent = await receiver.wait_requests(3)
        await asyncio.wait_for(d.wait_idle(), TIMEOUT)
        assert await d.deliver_due() == 0

    assert len(receiver.requests) == 3
    assert {r.key for r in sent} == {c.key}
    assert len({r.body for r in sent}) == 1  # the same charge, byte for byte
    assert all(verify(SECRET, r.headers["confide-signature"], r.body) for r in sent)
    # exponential backoff: 1 base, then 2 bases (no jitter here)
    assert sent[1].at - sent[0].at >= 0.9 * BACKOFF_MS / 1000
    assert sent[2].at - sent[1].at >= 0.9 * 2 * BACKOFF_MS / 1000
    attempts, delivered_ms, _ = row(store.path, c.key)
    assert (attempts, delivered_ms is not None) == (3, True)
    assert d.statistics().delivered == 1
    assert d.statistics().failed_attempts == 2


async def test_r7_purchase_charge_added_twice_is_delivered_once(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    c = a_charge("purchase", amount_cents=9_900)
    assert await add(store, c)
    assert not await add(store, c)  # the same key: nothing written
    d = delivery(store, http, receiver)
    async with running(d):
        await receiver.wait_requests(1)
        await asyncio.wait_for(d.wait_idle(), TIMEOUT)
        assert not await add(store, c)  # after delivery too
        d.wake()
        assert await d.deliver_due() == 0  # waits for any pass the wake started
    assert [r.key for r in receiver.requests] == [c.key]
    assert json.loads(receiver.requests[0].body)["amount_cents"] == 9_900


async def test_restarted_node_sends_undelivered_charges_and_not_delivered_ones(
        tmp_path: Path, http: httpx.AsyncClient, receiver: Receiver) -> None:
    path = tmp_path / "node.db"
    done, refused, later = a_charge(session="s-1"), a_charge(session="s-2"), \
        a_charge("late_reschedule", session="s-3")
    receiver.answers[refused.key] = [503]

    first = SQLiteStore(path)
    await first.open()
    for c in (done, refused):
        assert await add(first, c)
    assert await delivery(first, http, receiver).deliver_due() == 1
    assert await add(first, later)  # committed, never attempted before the node stops
    await first.close()

    second = SQLiteStore(path)
    await second.open()
    try:
        d = delivery(second, http, receiver)
        async with running(d):
            await receiver.wait_requests(4)
            await asyncio.wait_for(d.wait_idle(), TIMEOUT)
        assert await second.next_charge_ms() is None
    finally:
        await second.close()

    assert len(receiver.of(done.key)) == 1
    assert len(receiver.of(refused.key)) == 2
    assert len(receiver.of(later.key)) == 1
    for c, attempts in ((done, 1), (refused, 2), (later, 1)):
        assert row(path, c.key)[0] == attempts
        assert row(path, c.key)[1] is not None


async def test_wake_delivers_a_new_charge_promptly(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    d = delivery(store, http, receiver, idle_s=60.0)
    async with running(d):
        await asyncio.wait_for(d.wait_idle(), TIMEOUT)  # nothing due: asleep for 60 s
        c = a_charge("late_cancel")
        assert await add(store, c)
        d.wake()
        await receiver.wait_requests(1, timeout=1000 * MS)
    assert receiver.requests[0].key == c.key


async def test_concurrent_passes_never_send_one_charge_twice(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.latency_s = 50 * MS
    c = a_charge()
    assert await add(store, c)
    d = delivery(store, http, receiver)
    results = await asyncio.gather(d.deliver_due(), d.deliver_due(), d.deliver_due())
    assert sum(results) == 1
    assert len(receiver.requests) == 1
    assert receiver.most_in_flight == 1


# -- refusals, timeouts and logs ----------------------------------------------------------


async def test_4xx_is_logged_as_an_error_and_retried_without_room_content(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver,
        caplog: pytest.LogCaptureFixture) -> None:
    c = a_charge("no_show", amount_cents=15_000)
    receiver.answers[c.key] = [400]
    assert await add(store, c)
    d = delivery(store, http, receiver)
    with caplog.at_level(logging.INFO, logger="confide.billing"):
        async with running(d):
            await receiver.wait_requests(2)
            await asyncio.wait_for(d.wait_idle(), TIMEOUT)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert c.key in errors[0] and "400" in errors[0] and "15000" in errors[0]
    assert "no_show" in errors[0]
    assert all(CLIENT not in r.getMessage() and ROOM not in r.getMessage()
               for r in caplog.records)
    assert row(store.path, c.key)[:1] == (2,)
    assert row(store.path, c.key)[1] is not None


async def test_429_retry_after_is_honoured(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    c = a_charge()
    receiver.answers[c.key] = [429]  # with Retry-After: 2
    assert await add(store, c)
    before = now_ms()
    assert await delivery(store, http, receiver).deliver_due() == 0
    attempts, delivered_ms, next_try_ms = row(store.path, c.key)
    assert (attempts, delivered_ms) == (1, None)
    assert next_try_ms >= before + 2000


async def test_a_receiver_that_hangs_times_out_and_is_retried(
        store: SQLiteStore, http: httpx.AsyncClient, receiver: Receiver) -> None:
    c = a_charge()
    receiver.stall_first.add(c.key)
    assert await add(store, c)
    d = delivery(store, http, receiver, timeout_s=200 * MS)
    async with running(d):
        await receiver.wait_requests(2)
        await asyncio.wait_for(d.wait_idle(), TIMEOUT)
    attempts, delivered_ms, _ = row(store.path, c.key)
    assert (attempts, delivered_ms is not None) == (2, True)


# -- configuration and backoff (no I/O) ---------------------------------------------------


@pytest.mark.parametrize(("url", "secret", "problem"), [
    ("", "s", "URL is empty"),
    ("   ", "s", "URL is empty"),
    ("ftp://billing.example", "s", "https://"),
    ("https://billing.example/hook", "", "secret is empty"),
    ("https://billing.example/hook", b"", "secret is empty"),
])
async def test_delivery_refuses_an_empty_url_or_secret(
        store: SQLiteStore, http: httpx.AsyncClient, url: str, secret: str | bytes,
        problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ChargeDelivery(store, http, url, secret)


def test_backoff_doubles_from_one_second_up_to_ten_minutes() -> None:
    assert [backoff_ms(n) for n in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000]
    assert backoff_ms(10) == 512_000
    assert backoff_ms(11) == backoff_ms(500) == 600_000
    assert 1000 <= backoff_ms(1, jitter=0.99) <= 1200
    assert backoff_ms(200, jitter=0.99) == 600_000
    with pytest.raises(ValueError):
        backoff_ms(0)
