"""Charge delivery: every charge the session rules recorded, POSTed signed to the billing webhook.

Theory of operation. The session rules write each charge (R14 late cancellation, late
reschedule and no-show; R7/R12 credit purchase) into the store's `charges` table in the
same transaction as the step that caused it, so a charge exists exactly when its step
committed. `ChargeDelivery` is the one loop per node that takes the due ones
(`pending_charges`), POSTs each to the configured URL and records the attempt
(`charge_attempted`): delivered after a 2xx answer, otherwise due again after an
exponential backoff with jitter. A charge is never dropped: a 4xx answer is retried like a
5xx (logged as an error, since the receiver has to fix itself) and so is a refused
connection or a timeout.

The request. The body is the charge's JSON (`rooms.ledger.Charge`: key, kind, room, client,
amount_cents, at, rule, session) plus `"event": "charge"`, compact with sorted keys. Headers:

    Content-Type: application/json
    Idempotency-Key: <charge key>
    Confide-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

The receiver recomputes the HMAC over the exact body bytes it received, compares in
constant time, and rejects a `t` too far from its own clock (a replay); see `signature`.

Logs carry the charge key, kind, amount and HTTP status, never anything else of the room.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from server.store.base import ChargeRow

log = logging.getLogger("confide.billing")

SIGNATURE_HEADER = "Confide-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class ChargeQueue(Protocol):
    """What delivery needs of a store (`SQLiteStore` has it)."""

    async def pending_charges(self, now_ms: int, limit: int) -> list[ChargeRow]: ...

    async def next_charge_ms(self) -> int | None: ...

    async def charge_attempted(self, key: str, delivered: bool, next_try_ms: int,
                               now_ms: int) -> None: ...


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `Confide-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff_ms(attempts: int, *, base_ms: int = 1000, cap_ms: int = 600_000,
               jitter: float = 0.0) -> int:
    """Delay before the next try after `attempts` failed ones: base, 2 base, 4 base ... cap.

    `jitter` in [0, 1) stretches the delay by up to a fifth (never past the cap), so nodes
    that failed together do not retry together.
    """
    if attempts < 1:
        raise ValueError("backoff is for a charge that failed at least once")
    delay = base_ms * 2 ** min(attempts - 1, 40)
    return int(min(cap_ms, delay * (1 + 0.2 * jitter)))


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    delivered: int  # charges this object saw answered with a 2xx
    failed_attempts: int  # attempts answered otherwise, or not answered


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ChargeDelivery:
    """Sends each pending charge to the billing webhook until it answers 2xx.

    Exactly once, from our side: a charge is marked delivered only after a 2xx answer, and
    a delivered charge is never fetched again, so it is never sent again. Passes over the
    due charges never overlap (one lock), and a pass sends one charge at a time, so this
    node never has two requests for one charge in flight. What we cannot rule out is a
    repeat after the receiver's 2xx and before our commit (a crash, a cancelled task, a
    failed store write, or a 2xx lost on the network): the charge is then sent again with
    the same `Idempotency-Key` (the charge key), and the receiver must treat a key it has
    already accepted as done and answer 2xx again. Several nodes sharing one store may
    also race for one charge; the same key makes that harmless.

    Ownership: the caller opens and closes `http` (one `httpx.AsyncClient` for the node)
    and owns the task running `run()`; cancelling that task stops delivery (an attempt cut
    short is simply not recorded, and is made again later). `wake()` says a charge was
    just committed. Every request has its own timeout (`timeout_s`).

    `clock` (unix milliseconds), `backoff_base_ms`, `backoff_cap_ms` and `jitter` are there
    for tests; the defaults are the production values.
    """

    def __init__(self, store: ChargeQueue, http: httpx.AsyncClient, url: str,
                 secret: str | bytes, *, timeout_s: float = 5.0, batch: int = 50,
                 idle_s: float = 60.0, backoff_base_ms: int = 1000,
                 backoff_cap_ms: int = 600_000, clock: Callable[[], int] = _wall_ms,
                 jitter: Callable[[], float] = random.random) -> None:
        if not url or not url.strip():
            raise ValueError("billing webhook URL is empty")
        if not url.startswith(("https://", "http://")):
            raise ValueError("billing webhook URL must start with https:// or http://")
        if not secret:
            raise ValueError("billing webhook secret is empty")
        if batch < 1 or timeout_s <= 0 or idle_s <= 0 or backoff_base_ms < 1:
            raise ValueError("batch, timeout, idle time and backoff base must be positive")
        self.store = store
        self.http = http
        self.url = url
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout_s = timeout_s
        self.batch = batch
        self.idle_s = idle_s
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.clock = clock
        self.jitter = jitter
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._pass = asyncio.Lock()
        self._delivered = 0
        self._failed = 0

    # -- the owner's side -----------------------------------------------------------------

    def wake(self) -> None:
        """A charge was committed: look for due charges now. Never blocks."""
        self._wake.set()

    def statistics(self) -> DeliveryStatistics:
        return DeliveryStatistics(self._delivered, self._failed)

    async def wait_idle(self) -> None:
        """Wait until `run()` has finished a pass and sleeps (until a wake or a due time)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Deliver due charges until cancelled; sleep until the next is due or `wake()`."""
        while True:
            self._wake.clear()
            failing = False
            try:
                await self.deliver_due()
                next_ms = await self.store.next_charge_ms()
            except Exception:  # the store failed; charges stay pending
                log.exception("charge delivery pass failed; retrying")
                failing, next_ms = True, None
            delay = self.idle_s
            if next_ms is not None:
                delay = min(delay, max(0.0, (next_ms - self.clock()) / 1000))
            if failing:
                delay = max(delay, self.backoff_base_ms / 1000)  # retried, not spun on
            if delay <= 0:
                continue
            self._idle.set()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # arrives as the wait completes, and the owner would wait for ever.
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            finally:
                self._idle.clear()

    async def deliver_due(self) -> int:
        """One pass: try every charge due now, one at a time; how many were delivered."""
        delivered = 0
        async with self._pass:
            while True:
                due = await self.store.pending_charges(self.clock(), self.batch)
                for row in due:
                    delivered += await self._attempt(row)
                if len(due) < self.batch:
                    return delivered

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(self, row: ChargeRow) -> bool:
        try:
            fields = json.loads(row.body)
            if not isinstance(fields, dict):
                raise ValueError("a charge body is a JSON object")
        except ValueError:
            log.error("charge %s has an unreadable body; kept pending", row.key)
            await self._failed_attempt(row, None)
            return False
        kind, amount = fields.get("kind"), fields.get("amount_cents")
        body = json.dumps({**fields, "event": "charge"}, separators=(",", ":"),
                          sort_keys=True).encode()
        headers = {
            "content-type": "application/json",
            IDEMPOTENCY_HEADER: row.key,
            SIGNATURE_HEADER: signature(self._secret, self.clock() // 1000, body),
        }
        try:
            response = await self.http.post(self.url, content=body, headers=headers,
                                            timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            log.warning("charge %s (%s, %s cents) not delivered: %s; attempt %d",
                        row.key, kind, amount, type(exc).__name__, row.attempts + 1)
            await self._failed_attempt(row, None)
            return False
        status = response.status_code
        if 200 <= status < 300:
            await self.store.charge_attempted(row.key, True, 0, self.clock())
            self._delivered += 1
            log.info("charge %s (%s, %s cents) delivered: %d", row.key, kind, amount, status)
            return True
        level = logging.WARNING if status in (408, 429) or status >= 500 else logging.ERROR
        log.log(level, "charge %s (%s, %s cents) refused: %d; attempt %d",
                row.key, kind, amount, status, row.attempts + 1)
        await self._failed_attempt(row, _retry_after_ms(response.headers))
        return False

    async def _failed_attempt(self, row: ChargeRow, at_least_ms: int | None) -> None:
        self._failed += 1
        delay = backoff_ms(row.attempts + 1, base_ms=self.backoff_base_ms,
                           cap_ms=self.backoff_cap_ms, jitter=self.jitter())
        if at_least_ms is not None:
            delay = max(delay, min(at_least_ms, self.backoff_cap_ms))
        now = self.clock()
        await self.store.charge_attempted(row.key, False, now + delay, now)


def _retry_after_ms(headers: httpx.Headers) -> int | None:
    """A `Retry-After` in seconds (408, 429, 503 send it); dates are ignored."""
    value = headers.get("retry-after")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip()) * 1000
