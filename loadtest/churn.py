"""The scenarios that are not steady chat: connection churn and live-session signaling.

``churn`` opens and closes connections at a set rate: each cycle is a websocket
handshake, ``hello`` (the token check), ``sub`` up to ``subbed``, and a close. A
fixed number of cycle loops (bounded concurrency) share the rate; a cycle that
starts more than 100 ms after its slot counts as late, which is how a generator
or server that cannot keep up shows itself.

``live`` has the two members of each room join their live session
(``live.join``), wait for ``live.start`` and exchange signaling: an offer, an
answer, then ICE candidates at the set rate each way. Signals have no ack, so a
signal counts as acknowledged when sent and as lost when the other side never
got it; its latency is send → the other side's ``live.signal``.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from loadtest.fastws import ClientConnection, ConnectionClosed, InvalidHandshake, connect
from loadtest.tally import Flow, Receiver
from loadtest.user import OPEN_TIMEOUT_S, Member, open_error_name
from loadtest.wire import Codec, Frame

if TYPE_CHECKING:
    from loadtest.worker import RoomPlan, Worker

LIVE_START_TIMEOUT_S = 10.0


async def _hello(member: Member, codec: Codec) -> ClientConnection:
    ws = await connect(
        member.url,
        subprotocols=[codec.subprotocol],
        close_timeout=2,
        open_timeout=OPEN_TIMEOUT_S,
    )
    try:
        ws.send(codec.encode({"t": "hello", "token": member.token}))
        welcome = codec.decode(await ws.recv())
    except BaseException:
        ws.abort()
        raise
    if welcome.get("t") != "welcome":
        ws.abort()
        raise ConnectionError(f"hello answered {welcome.get('code')}")
    return ws


async def _cycle(worker: Worker, member: Member, codec: Codec) -> None:
    meter = worker.meter
    t0 = time.monotonic_ns()
    meter.connections += 1
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            ws = await _hello(member, codec)
            try:
                ws.send(codec.encode({"t": "sub", "room": member.room, "id": "sub"}))
                while True:
                    frame = codec.decode(await ws.recv())
                    if frame.get("t") in ("subbed", "error"):
                        break
                if frame.get("t") == "error":
                    meter.errors.add(str(frame.get("code")))
                else:
                    meter.record_setup(time.monotonic_ns() - t0)
                await ws.close()
            except BaseException:
                ws.abort()  # no connection left open behind a failed cycle
                raise
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
        meter.errors.add(open_error_name(exc))
    except ConnectionError:
        meter.errors.add("hello_refused")
    finally:
        meter.connections -= 1


async def run_churn(worker: Worker) -> None:
    plan = worker.plan
    codec = Codec(plan.encoding)
    members = [m for room in plan.rooms for m in (room.client, room.provider)]
    rate = max(plan.churn_rate, 0.1)
    loops = max(1, min(plan.open_concurrency, math.ceil(rate / 4)))
    interval = loops / rate
    await worker.wait_go()
    start = time.monotonic()
    end = start + plan.duration_s

    async def cycle_loop(i: int) -> None:
        next_t = start + i * interval / loops
        k = i
        while next_t < end:
            now = time.monotonic()
            if now >= end:
                break  # behind schedule at the end: the slots left are not made up
            if next_t > now:
                await asyncio.sleep(next_t - now)
            worker.meter.scheduled += 1
            if time.monotonic() - next_t > 0.1:
                worker.meter.schedule_late += 1
            await _cycle(worker, members[k % len(members)], codec)
            k += loops
            next_t += interval

    async with asyncio.TaskGroup() as tg:
        for i in range(loops):
            tg.create_task(cycle_loop(i))
    elapsed = time.monotonic() - start
    worker.extra["setups_per_s"] = worker.meter.setups / elapsed if elapsed else 0.0


async def run_live(worker: Worker) -> None:
    plan = worker.plan
    codec = Codec(plan.encoding)
    await worker.wait_go()
    async with asyncio.TaskGroup() as tg:
        for room in plan.rooms:
            tg.create_task(_live_pair(worker, room, codec))


async def _live_pair(worker: Worker, room: RoomPlan, codec: Codec) -> None:
    meter = worker.meter
    flows = {room.client.user: Flow(meter.totals), room.provider.user: Flow(meter.totals)}
    worker.flows += flows.values()
    sent_at: dict[tuple[str, int], int] = {}
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S + LIVE_START_TIMEOUT_S):
            client = await _hello(room.client, codec)
            provider = await _hello(room.provider, codec)
            for ws in (client, provider):
                ws.send(codec.encode({"t": "live.join", "session": room.session, "id": "j"}))
            for ws in (client, provider):
                await _wait_for(ws, codec, "live.start")
        meter.connections += 2
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ConnectionError) as exc:
        meter.errors.add(f"live_join_{type(exc).__name__}")
        return
    end = time.monotonic() + worker.plan.duration_s
    pairs = ((client, room.client, room.provider), (provider, room.provider, room.client))
    async with asyncio.TaskGroup() as tg:
        for ws, me, other in pairs:
            tg.create_task(_signal_out(worker, ws, codec, room, flows[me.user], sent_at, me, end))
            tg.create_task(_signal_in(worker, ws, codec, flows[other.user], sent_at, other, end))
    meter.connections -= 2


async def _wait_for(ws: ClientConnection, codec: Codec, kind: str) -> Frame:
    while True:
        frame = codec.decode(await ws.recv())
        if frame.get("t") == kind:
            return frame
        if frame.get("t") == "error":
            raise ConnectionError(f"{kind}: {frame.get('code')}")


async def _signal_out(
    worker: Worker, ws: ClientConnection, codec: Codec, room: RoomPlan, flow: Flow,
    sent_at: dict[tuple[str, int], int], me: Member, end: float,
) -> None:
    interval = 1.0 / max(worker.plan.settings.rate, 0.1)
    try:
        while time.monotonic() < end:
            n = flow.next_n()
            flow.on_ack(n)  # signals are not acknowledged: sent counts as accepted
            data = {"type": "candidate", "candidate": {
                "candidate": f"candidate:{n} 1 udp 2122260223 127.0.0.1 {9 + n % 60000} typ host",
                "sdpMid": "0", "sdpMLineIndex": 0}}
            sent_at[(me.user, n)] = time.monotonic_ns()
            ws.send(codec.encode({"t": "live.signal", "session": room.session, "data": data}))
            await asyncio.sleep(interval)
    except ConnectionClosed:
        worker.meter.errors.add("live_closed")


async def _signal_in(
    worker: Worker, ws: ClientConnection, codec: Codec, flow: Flow,
    sent_at: dict[tuple[str, int], int], other: Member, end: float,
) -> None:
    receiver = Receiver()
    try:
        async with asyncio.timeout(max(0.0, end - time.monotonic()) + 2.0):
            async for data in ws:
                frame = codec.decode(data)
                if frame.get("t") != "live.signal":
                    continue
                cand = frame.get("data", {}).get("candidate", {}).get("candidate", "")
                n = int(cand.split(" ")[0].split(":")[1]) if cand.startswith("candidate:") else 0
                if flow.on_receive(n, receiver.check(n, n)):
                    t0 = sent_at.pop((other.user, n), None)
                    if t0 is not None:
                        worker.meter.latency.record_ns(time.monotonic_ns() - t0)
    except TimeoutError:
        pass
    except ConnectionClosed:
        worker.meter.errors.add("live_closed")
    finally:
        await ws.close()
