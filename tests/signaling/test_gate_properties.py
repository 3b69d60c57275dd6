"""Property test of the join gate (R10): random joins, leaves, drops, signals and time.

Thousands of random sequences by the client, the provider and a stranger. The test
keeps its own plain record of who is present (from the inputs that succeeded and the
`Ended` events), independent of the gate's, and checks after every step:

- a `Start` pair comes exactly when both are present and the scheduled start has
  come, once per such period, never otherwise (R10): on the join that completes
  the pair, or, when both waited for the start, on the first call after it;
- each pair has exactly one polite side, the client; the first pair is not a
  resume, every later one is;
- a signal is accepted exactly while the session is live (a `Start` pair was
  returned and both are still present) before the end (R10), and goes to the
  other side;
- an input that raises changes nothing (statistics, attendance, next deadline);
- the stranger is always refused; events go only to the client or the provider;
- presence intervals never overlap, and one is open exactly while its user is present;
- each side gets one `Ended` at most, and nothing happens after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ClientError, Conflict, Forbidden, RuleError
from server.ids import SessionId, UserId
from signaling.events import Ended, Event, Left, PeerAway, Start, Waiting
from signaling.gate import CloseReason, GateSettings, JoinGate

S = SessionId("s-prop")
CLIENT = UserId("client")
PROVIDER = UserId("provider")
STRANGER = UserId("stranger")
START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
END = START + timedelta(minutes=45)
GRACE = timedelta(seconds=60)
OPENS = timedelta(minutes=10)
CLOSE_REASONS: list[CloseReason] = ["cancelled", "no_show"]

who = st.sampled_from([CLIENT, PROVIDER, CLIENT, PROVIDER, STRANGER])
seconds = st.one_of(
    st.integers(1, 59), st.integers(55, 65), st.integers(60, 180), st.integers(300, 1200)
)
# Weighted by repetition: mostly joins, drops and signals; a rare close, so that most
# sequences live long enough to start, drop, resume and reach their end.
STEP_NAMES = (
    ["join"] * 24
    + ["leave"] * 8
    + ["drop"] * 12
    + ["signal"] * 16
    + ["expire"] * 8
    + ["advance"] * 20
    + ["close"]
)


# One fixed strategy per step (a flatmap would rebuild strategies on every draw):
# a step name and every argument a step may use; each step reads the ones it needs.
step = st.tuples(
    st.sampled_from(STEP_NAMES),
    who,
    st.sampled_from([True] * 9 + [False]),
    seconds,
    st.sampled_from(CLOSE_REASONS),
)
Step = tuple[str, UserId, bool, int, CloseReason]

# The first `now`: mostly inside the join window, sometimes before it or late.
first_offset = st.one_of(
    st.integers(-10 * 60, 0), st.integers(-13 * 60, -9 * 60), st.integers(0, 44 * 60)
)


@dataclass
class Model:
    """The test's own record of the session, from what succeeded."""

    present: dict[UserId, bool] = field(default_factory=lambda: {CLIENT: False, PROVIDER: False})
    ended: bool = False
    live: bool = False
    start_pairs: int = 0
    ended_events: dict[UserId, int] = field(default_factory=lambda: {CLIENT: 0, PROVIDER: 0})

    def both(self) -> bool:
        return self.present[CLIENT] and self.present[PROVIDER]


def snapshot(gate: JoinGate) -> tuple[object, ...]:
    return (gate.statistics(), gate.attendance(), gate.next_deadline())


def check_events(events: list[Event], model: Model, actor: UserId | None) -> None:
    for e in events:
        assert e.to in (CLIENT, PROVIDER)
        assert not model.ended, "nothing happens after the end"
        match e:
            case Start():
                pass
            case Waiting():
                assert e.to == actor
            case PeerAway(user=user) | Left(user=user):
                assert user != e.to
            case Ended():
                model.ended_events[e.to] += 1
        if isinstance(e, Ended) and all(model.ended_events.values()):
            model.ended = True
            model.live = False
            model.present = {CLIENT: False, PROVIDER: False}
    assert all(n <= 1 for n in model.ended_events.values())


def check_starts(events: list[Event], model: Model, expected: bool) -> None:
    pair = [e for e in events if isinstance(e, Start)]
    if expected:
        assert len(pair) == 2, "one Start pair when both are present at or after the start"
        assert {e.to for e in pair} == {CLIENT, PROVIDER}
        assert [e.polite for e in pair if e.to == CLIENT] == [True]
        assert [e.polite for e in pair if e.to == PROVIDER] == [False]
        assert {e.resume for e in pair} == {model.start_pairs > 0}
        model.start_pairs += 1
    else:
        assert pair == [], "no Start unless both are present at or after the start"


def check_intervals(gate: JoinGate, model: Model) -> None:
    record = gate.attendance()
    assert len(record.starts) == model.start_pairs
    for user in (CLIENT, PROVIDER):
        mine = record.intervals_of(user)
        for a, b in pairwise(mine):
            assert a.left_at is not None and a.left_at <= b.joined_at
        for i in mine:
            assert i.left_at is None or i.joined_at <= i.left_at
        open_now = bool(mine) and mine[-1].left_at is None
        assert open_now == model.present[user]


@settings(max_examples=2000, deadline=None)
@given(first_offset, st.lists(step, min_size=8, max_size=50))
def test_r10_gate_properties_hold_for_random_sequences(offset: int, steps: list[Step]) -> None:
    gate = JoinGate(
        session=S,
        client=CLIENT,
        provider=PROVIDER,
        start=START,
        end=END,
        settings=GateSettings(opens_before=OPENS, rejoin_grace=GRACE),
    )
    model = Model()
    now = START + timedelta(seconds=offset)
    for name, user, confirmed, delta, reason in steps:
        before = snapshot(gate)
        # Both were waiting for the scheduled start, which has now come: any call starts.
        deferred = model.both() and not model.live and START <= now and not model.ended
        deferred = deferred and name != "signal"  # a signal check commits nothing
        completes = False
        actor: UserId | None = None
        try:
            match name:
                case "join":
                    actor = user
                    completes = not model.both()
                    events = gate.join(actor, now, confirmed=confirmed)
                    model.present[actor] = True
                    completes = completes and model.both() and START <= now
                    assert confirmed and START - OPENS <= now < END
                case "leave":
                    actor = user
                    events = gate.leave(actor, now)
                    model.present[actor] = False
                case "drop":
                    actor = user
                    events = gate.drop(actor, now)
                    model.present[actor] = False
                case "signal":
                    actor = user
                    peer = gate.check_signal(actor, now)
                    assert model.live and now < END, "signal only while both present"
                    assert peer == (PROVIDER if actor == CLIENT else CLIENT)
                    assert snapshot(gate) == before, "a signal check changes nothing"
                    events = []
                case "expire":
                    events = gate.expire(now)
                case "advance":
                    now += timedelta(seconds=delta)
                    continue  # no call: the gate learns of the time at the next one
                case "close":
                    assert reason in ("cancelled", "no_show")
                    events = gate.close(now, reason)
                case _:
                    raise AssertionError(name)
        except ClientError as exc:
            assert snapshot(gate) == before, "an input that fails changes nothing"
            if actor == STRANGER:
                assert isinstance(exc, Forbidden)
            else:
                assert isinstance(exc, RuleError | Conflict)
            if name == "signal" and actor != STRANGER:
                assert not (model.live and now < END), "signal refused while both in"
            continue
        assert actor != STRANGER, "the stranger is always refused"
        check_starts(events, model, deferred or completes)
        model.live = model.live or deferred or completes
        check_events(events, model, actor)
        if name in ("leave", "drop"):
            model.live = False
        assert model.live == (model.both() and START <= now and not model.ended)
        assert (gate.statistics().phase == "live") == model.live
        check_intervals(gate, model)
