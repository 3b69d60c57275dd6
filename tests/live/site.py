"""Helpers of the live-media tests: a node serving the join page, bookings, coturn.

The node runs the session rules on a `FakeClock` anchored at the real time when the
test starts, so joining is open at once (sessions start 5 to 10 minutes later, inside
the join window of R10) and the TURN credentials that `live.start` mints from that
clock are valid for the real coturn. Media itself runs in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from support.client import MS, Client
from support.nodes import FakeClock, RunningNode, node_in_process

NODE_SETTINGS: dict[str, Any] = {
    "rate_limit_per_s": 100_000,
    "rate_limit_burst": 100_000,
    "deadline_poll_s": 3600.0,  # no deadline job fires by itself during a test
}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
TURNSERVER = "/usr/bin/turnserver"


def require(binary: str, what: str) -> str:
    """The binary's path, or a failure (never a skip): CI installs it."""
    found = shutil.which(binary)
    if found is None:
        raise AssertionError(f"{what} is missing ({binary}): install it (the CI script does: "
                             f"apt-get install chromium coturn)")
    return found


def first_start(now: datetime) -> datetime:
    """The first five-minute mark at least 5 minutes after `now` (so 5 to 10 min ahead)."""
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=5)
    t += timedelta(minutes=(-t.minute) % 5)
    return t if t >= now + timedelta(minutes=5) else t + timedelta(minutes=5)


@contextlib.asynccontextmanager
async def live_node(data: Path, clock: FakeClock, **overrides: Any
                    ) -> AsyncIterator[RunningNode]:
    """A node in this event loop on a free port (it serves the join page itself)."""
    async with node_in_process(data, clock, **{**NODE_SETTINGS, **overrides}) as node:
        yield node


@dataclass(frozen=True)
class Booking:
    room: str
    session: str
    client: str
    provider: str
    modality: str


@dataclass
class Site:
    """A live node, an HTTP client on it, and the start time every booking uses."""

    node: RunningNode
    http: httpx.AsyncClient
    clock: FakeClock
    start: datetime

    def auth(self, user: str, role: str) -> dict[str, str]:
        return {"authorization": "Bearer " + self.node.token(user, role)}

    async def book(self, room: str, client: str, modality: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/rooms/{room}/sessions", headers=self.auth(client, "client"),
            json={"kind": "live", "modality": modality, "start": self.start.isoformat()})

    async def booked(self, modality: str = "video", service: str = "therapy") -> Booking:
        """A fresh room (its own client and provider), a session booked and confirmed."""
        tag = secrets.token_hex(4)
        client, provider = f"client_{tag}", f"provider_{tag}"
        room = await self.node.room(client, provider, "self_pay", service)
        r = await self.book(room, client, modality)
        assert r.status_code == 201, r.text
        session = r.json()["session"]
        r = await self.http.post(f"/v1/sessions/{session}/confirm",
                                 headers=self.auth(provider, "provider"))
        assert r.status_code == 200, r.text
        return Booking(room, session, client, provider, modality)

    async def connect(self, user: str, role: str) -> Client:
        return await Client.connect(self.node.url, self.node.token(user, role), "json")

    async def joined(self, booking: Booking) -> tuple[Client, Client, dict[str, Any],
                                                      dict[str, Any], float]:
        """Client joins (waits), then the provider: both `live.start` frames, and the
        `time.perf_counter()` at which the first of them arrived."""
        client = await self.connect(booking.client, "client")
        provider = await self.connect(booking.provider, "provider")
        joined = await client.request({"t": "live.join", "session": booking.session})
        assert joined["t"] == "live.joined", joined
        await client.next_type("live.waiting", session=booking.session)
        joined = await provider.request({"t": "live.join", "session": booking.session})
        assert joined["t"] == "live.joined", joined
        first = asyncio.create_task(client.next_type("live.start", session=booking.session))
        second = asyncio.create_task(provider.next_type("live.start", session=booking.session))
        await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        t0 = time.perf_counter()
        return client, provider, await first, await second, t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def report(name: str, values_ms: list[float]) -> str:
    line = (f"{name}: join-to-connected over {len(values_ms)} runs: "
            f"p50 {percentile(values_ms, 0.5):.0f} ms, max {max(values_ms):.0f} ms")
    print(line)
    return line


# -- coturn ----------------------------------------------------------------------------------


@dataclass
class Coturn:
    port: int
    secret: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_text(self) -> str:
        return self.log.read_text("utf-8", errors="replace")


def _free_turn_port() -> int:
    """A port free for both UDP and TCP (coturn listens on both), below the range the
    kernel hands out to outgoing connections, so that no client socket takes it meanwhile."""
    while True:
        port = 20000 + secrets.randbelow(12000)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port


def _stun_answers(port: int) -> bool:
    """A STUN Binding request to the port gets a Binding success response."""
    request = bytes.fromhex("0001" "0000" "2112a442") + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(100 * MS)
        s.sendto(request, ("127.0.0.1", port))
        try:
            data = s.recv(2048)
        except OSError:
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == request[8:20]


@contextlib.contextmanager
def coturn(folder: Path) -> Iterator[Coturn]:
    """A real coturn on a free UDP port of 127.0.0.1, TURN REST-API secret, stopped after."""
    binary = require(TURNSERVER, "coturn's turnserver")
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(16)
    log = folder / "turnserver.log"
    for attempt in range(3):  # a port taken between the check and coturn's bind: another
        port = _free_turn_port()
        low = 49152 + secrets.randbelow(12000)
        args = [
            binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={port}", "--use-auth-secret", f"--static-auth-secret={secret}",
            "--realm=confide", "--no-cli", "--no-tls", "--no-dtls", f"--min-port={low}",
            f"--max-port={low + 200}", "--allow-loopback-peers", "--log-file=stdout",
            "--simple-log", "--verbose", f"--pidfile={folder / 'turnserver.pid'}",
            f"--userdb={folder / 'turndb'}", "--no-software-attribute",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
        running = Coturn(port, secret, log, process)
        deadline = time.monotonic() + 10_000 * MS
        while not _stun_answers(port):
            in_use = "Address already in use" in running.log_text()
            if process.poll() is not None or time.monotonic() > deadline or in_use:
                _stop(process)
                if in_use and attempt < 2:
                    break
                raise AssertionError(f"coturn did not start: {running.log_text()[-2000:]}")
        else:
            break
    try:
        yield running
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def now_utc() -> datetime:
    return datetime.now(UTC)
