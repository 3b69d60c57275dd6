"""What the load tester drives: spawning a node (Confide or the relay) and provisioning it.

``--spawn`` starts ``confide serve`` in a temporary data directory on a free
loopback port (optionally pinned to CPUs with ``taskset``, with raised rate and
file limits), makes the admin token with ``confide token`` and stops the node at
the end. ``--spawn-relay`` does the same for :mod:`loadtest.relay`. Against a
running node, rooms and tokens are provisioned through the admin calls of
PROTOCOL.md (``POST /v1/tokens``, ``POST /v1/rooms``); against the relay (which
has no auth) the token is simply the user id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from loadtest.wire import http_url, is_loopback


class TargetError(Exception):
    """The node could not be started, reached or provisioned."""


@dataclass(frozen=True)
class Node:
    url: str  # the HTTP base URL
    kind: str  # "confide", "relay" or "external"
    pid: int | None = None
    admin_token: str | None = None


@dataclass(frozen=True)
class Provisioned:
    room: str
    client: tuple[str, str]  # (user, token)
    provider: tuple[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_loopback(urls: Sequence[str]) -> None:
    for url in urls:
        if not is_loopback(url):
            raise TargetError(f"only loopback targets are allowed, not {url}")


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise TargetError(f"node exited with {proc.returncode} before serving")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{url}/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise TargetError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s")


def confide_command() -> list[str]:
    beside = Path(sys.executable).parent / "confide"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("confide")
    if found:
        return [found]
    return [sys.executable, "-m", "server.cli"]


def _pinned(cmd: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus and shutil.which("taskset") else cmd


def _raise_nofile() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def spawn_confide(
    cpus: str = "", rate_limit: int = 0, extra_args: Sequence[str] = (), log: Path | None = None,
    *, prefix: Sequence[str] = (), start_timeout_s: float = 30.0, stop_timeout_s: float = 10.0,
) -> Iterator[Node]:
    """Start ``confide serve`` on a free port in a temporary data dir; stop it on exit.

    `prefix` runs the node under another program (``valgrind ...``), which execs it in
    the same process; the start and the stop (SIGTERM, then SIGKILL) then get longer."""
    base = confide_command()
    with tempfile.TemporaryDirectory(prefix="confide-lt-") as data:
        port = free_port()
        env = dict(os.environ)
        if rate_limit:
            env["CONFIDE_RATE_LIMIT_PER_S"] = str(rate_limit)
            env["CONFIDE_RATE_LIMIT_BURST"] = str(rate_limit)
        cmd = [*base, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", data,
               *extra_args]
        out = open(log or os.devnull, "ab")
        proc = subprocess.Popen(_pinned([*prefix, *cmd], cpus), env=env, stdout=out,
                                stderr=out, stdin=subprocess.DEVNULL, preexec_fn=_raise_nofile)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, start_timeout_s)
            token = subprocess.run(
                [*base, "token", "--data", data, "--user", "admin", "--role", "admin"],
                check=True, capture_output=True, text=True, env=env, timeout=30,
            ).stdout.strip()
            yield Node(url, "confide", proc.pid, token)
        finally:
            _stop(proc, stop_timeout_s)
            out.close()


@contextlib.contextmanager
def spawn_relay(cpus: str = "") -> Iterator[Node]:
    """Start the baseline relay on a free port; stop it on exit."""
    cmd = [sys.executable, "-m", "loadtest.relay", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(_pinned(cmd, cpus), stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=_raise_nofile)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("relay listening on "):
            raise TargetError(f"relay did not start: {line!r}")
        url = "http://" + line.split()[-1]
        wait_healthy(url, proc)
        yield Node(url, "relay", proc.pid)
    finally:
        _stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def relay_rooms(n_rooms: int) -> list[Provisioned]:
    """Rooms and users for the relay: no provisioning, the token is the user id."""
    run = secrets.token_hex(3)
    return [
        Provisioned(f"lt{run}r{i}", (f"lt{run}c{i}",) * 2, (f"lt{run}p{i}",) * 2)
        for i in range(n_rooms)
    ]


async def provision(
    url: str, admin_token: str, n_rooms: int, ttl_s: int, concurrency: int = 32
) -> list[Provisioned]:
    """Create rooms and tokens through the admin API, ``concurrency`` requests at a time."""
    run = secrets.token_hex(3)
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {admin_token}"}

    async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with limit:
            for attempt in range(5):
                try:
                    r = await http.post(path, json=body)
                except httpx.TransportError as exc:
                    if attempt == 4:
                        raise TargetError(f"POST {path}: {exc!r}") from exc
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                if r.status_code == 429 and attempt < 4:
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                if r.status_code not in (200, 201):
                    raise TargetError(f"POST {path} answered {r.status_code}: {r.text[:200]}")
                value: dict[str, Any] = r.json()
                return value
        raise TargetError(f"POST {path}: rate limited")

    async def one(http: httpx.AsyncClient, i: int) -> Provisioned:
        client, provider = f"lt{run}c{i}", f"lt{run}p{i}"
        room = await post(http, "/v1/rooms", {"client": client, "provider": provider,
                                              "plan": "self_pay", "service": "therapy"})
        tokens = [
            (await post(http, "/v1/tokens", {"user": u, "role": role, "ttl": ttl_s}))["token"]
            for u, role in ((client, "client"), (provider, "provider"))
        ]
        return Provisioned(str(room["room"]), (client, tokens[0]), (provider, tokens[1]))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=http_url(url), headers=headers, timeout=30,
                                 limits=limits) as http:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(http, i)) for i in range(n_rooms)]
    return [t.result() for t in tasks]


async def provision_live(url: str, admin_token: str, rooms: Sequence[Provisioned]) -> list[str]:
    """A live session per room, booked by the client and confirmed by the provider.

    Raises :class:`TargetError` naming the call that failed when the node has no
    live sessions (or its rules refuse an immediate one).
    """
    base = http_url(url)
    # Bookings start on a five-minute mark; the next one at least a minute away is
    # always inside the join window (which opens ten minutes before the start).
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = (soon + timedelta(minutes=(-soon.minute) % 5)).isoformat()
    sessions = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for p in rooms:
            calls: list[tuple[str, str, dict[str, Any]]] = [
                (admin_token, f"/v1/rooms/{p.room}/credits", {"count": 10}),
                (p.client[1], f"/v1/rooms/{p.room}/sessions",
                 {"kind": "live", "modality": "video", "start": start}),
            ]
            session = ""
            for token, path, body in calls:
                r = await http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
                if r.status_code not in (200, 201):
                    raise TargetError(f"POST {path} answered {r.status_code}: {r.text[:200]}")
                session = str(r.json().get("session", ""))
            path = f"/v1/sessions/{session}/confirm"
            r = await http.post(path, headers={"Authorization": f"Bearer {p.provider[1]}"})
            if r.status_code not in (200, 201):
                raise TargetError(f"POST {path} answered {r.status_code}: {r.text[:200]}")
            sessions.append(session)
    return sessions
