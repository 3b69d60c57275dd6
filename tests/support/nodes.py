"""Real Confide nodes for tests: in this process on a free port, or as a `confide serve` child."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from server.app import Node, build_node, create_app, server_config
from server.broker import Broker
from server.config import Settings, load

CONFIDE = str(Path(sys.executable).with_name("confide"))


@dataclasses.dataclass
class RunningNode:
    url: str
    settings: Settings
    node: Node | None = None
    process: subprocess.Popen[str] | None = None

    async def tick(self, delta: timedelta) -> int:
        """Move the injected clock on and fire what fell due; how many jobs fired."""
        assert self.node is not None
        clock = self.node.sessions.clock
        assert isinstance(clock, FakeClock), "tick needs a node made with a FakeClock"
        clock.advance(delta)
        await self.node.live.expire_due()
        return await self.node.deadlines.run_due()

    def token(self, user: str, role: str = "client", ttl: int | None = None) -> str:
        """A token of the node's key; a `ttl` of 0 or less: one that expired -ttl s ago."""
        import time

        from server.auth import TokenAuthority
        from server.config import MAX_TOKEN_TTL_S

        authority = TokenAuthority(self.settings)
        if ttl is not None and ttl <= 0:  # issued a second before it expired
            return authority.issue(user, role, 1, now=time.time() + ttl - 1)
        if ttl is not None and ttl > MAX_TOKEN_TTL_S:  # longer than the node issues: signed here
            import jwt

            from server.auth import load_or_create_key

            now = int(time.time())
            return jwt.encode({"sub": user, "role": role, "iat": now, "exp": now + ttl},
                              load_or_create_key(self.settings.data), algorithm="HS256")
        return authority.issue(user, role, ttl)

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": "Bearer " + self.token("admin", "admin")}

    async def room(self, client: str, provider: str, plan: str = "self_pay",
                   service: str = "therapy", **extra: Any) -> str:
        async with httpx.AsyncClient(base_url=self.url) as http:
            r = await http.post("/v1/rooms", headers=self.admin,
                                json={"client": client, "provider": provider, "plan": plan,
                                      "service": service, **extra})
            assert r.status_code == 201, r.text
            return str(r.json()["room"])


def settings_for(data: Path, **overrides: Any) -> Settings:
    return load({"data": data, "port": 0, **overrides}, environ={})


class FakeClock:
    """An injected clock for deadline tests: time moves only when the test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@contextlib.asynccontextmanager
async def node_in_process(data: Path, clock: FakeClock | None = None,
                          broker: Broker | None = None,
                          **overrides: Any) -> AsyncIterator[RunningNode]:
    """A node served by uvicorn in this event loop, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = dataclasses.replace(settings_for(data, **overrides), port=port)
    node = (build_node(settings, broker=broker, clock=clock) if clock
            else build_node(settings, broker=broker))
    app = create_app(settings, node)
    config = server_config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield RunningNode(f"http://127.0.0.1:{port}", settings, node=node)
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def node_process(data: Path, *extra: str, env: dict[str, str] | None = None
                 ) -> Iterator[RunningNode]:
    """A `confide serve` child process on a free port; stopped (SIGTERM, then kill) after."""
    proc = spawn(data, *extra, env=env)
    try:
        yield proc
    finally:
        stop(proc)


def spawn(data: Path, *extra: str, env: dict[str, str] | None = None) -> RunningNode:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    full_env.update(env or {})
    process = subprocess.Popen(
        [CONFIDE, "serve", "--port", "0", "--data", str(data), "--log-level", "warning", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://[\d.]+:(\d+)", line)
    if match is None:
        process.kill()
        raise RuntimeError(f"confide serve did not start: {line!r} {process.stderr.read()!r}")
    url = f"http://127.0.0.1:{match.group(1)}"
    _wait_healthy(url, process)
    settings = settings_for(data)
    return RunningNode(url, settings, process=process)


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("confide serve exited during start-up")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("confide serve did not become healthy")


def stop(node: RunningNode, sig: int = signal.SIGTERM) -> int:
    proc = node.process
    assert proc is not None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    return proc.returncode
