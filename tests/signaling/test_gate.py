"""Unit tests of the join gate (R10, R8) and its attendance record (R15)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from server.errors import Conflict, Forbidden, RuleError
from server.ids import SessionId, UserId
from signaling.events import Ended, Event, Left, PeerAway, Start, Waiting, frame_of
from signaling.gate import GateSettings, JoinGate

S = SessionId("s1")
CLIENT = UserId("u-client")
PROVIDER = UserId("u-provider")
STRANGER = UserId("u-stranger")
START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
END = START + timedelta(minutes=50)


def at(minutes: float) -> datetime:
    """A time `minutes` after the scheduled start (negative: before it)."""
    return START + timedelta(minutes=minutes)


def make_gate(settings: GateSettings | None = None) -> JoinGate:
    return JoinGate(
        session=S,
        client=CLIENT,
        provider=PROVIDER,
        start=START,
        end=END,
        settings=settings,
    )


def started_gate() -> JoinGate:
    gate = make_gate()
    gate.join(CLIENT, at(-5), confirmed=True)
    gate.join(PROVIDER, at(0), confirmed=True)
    return gate


def starts(events: Sequence[Event]) -> list[Start]:
    return [e for e in events if isinstance(e, Start)]


# -- R10: who, when, and the start -------------------------------------------------------


def test_r10_first_to_join_waits() -> None:
    gate = make_gate()
    assert gate.join(CLIENT, at(-5), confirmed=True) == [Waiting(S, CLIENT)]
    assert gate.statistics().phase == "pending"


def test_r10_session_starts_when_both_joined_client_polite() -> None:
    gate = make_gate()
    gate.join(PROVIDER, at(-3), confirmed=True)
    events = gate.join(CLIENT, at(2), confirmed=True)
    assert events == [
        Start(S, CLIENT, polite=True, resume=False),
        Start(S, PROVIDER, polite=False, resume=False),
    ]
    assert gate.statistics().phase == "live"
    assert gate.attendance().started_at == at(2)


def test_r10_both_early_wait_for_the_scheduled_start() -> None:
    gate = make_gate()
    gate.join(PROVIDER, at(-3), confirmed=True)
    assert gate.join(CLIENT, at(-2), confirmed=True) == [Waiting(S, CLIENT)]
    with pytest.raises(RuleError) as err:
        gate.check_signal(CLIENT, at(-1))
    assert err.value.rule == "R10"
    assert gate.next_deadline() == START
    assert gate.expire(at(-0.5)) == []
    assert [(e.to, e.polite) for e in starts(gate.expire(START))] == [
        (CLIENT, True),
        (PROVIDER, False),
    ]
    assert gate.attendance().started_at == START
    assert gate.check_signal(CLIENT, at(0)) == PROVIDER


def test_r10_no_signal_before_the_start_pair_is_returned() -> None:
    gate = make_gate()
    gate.join(PROVIDER, at(-3), confirmed=True)
    gate.join(CLIENT, at(-2), confirmed=True)
    with pytest.raises(RuleError):  # the start is due, but nobody got live.start yet
        gate.check_signal(CLIENT, at(0.1))
    assert len(starts(gate.expire(at(0.1)))) == 2
    assert gate.check_signal(CLIENT, at(0.1)) == PROVIDER


def test_r10_early_start_setting_starts_when_both_present() -> None:
    gate = make_gate(GateSettings(early_start=True))
    gate.join(PROVIDER, at(-3), confirmed=True)
    assert len(starts(gate.join(CLIENT, at(-2), confirmed=True))) == 2
    assert gate.attendance().started_at == at(-2)


def test_r10_joining_opens_ten_minutes_before_start() -> None:
    gate = make_gate()
    with pytest.raises(RuleError) as err:
        gate.join(CLIENT, at(-10) - timedelta(seconds=1), confirmed=True)
    assert err.value.rule == "R10"
    assert gate.presence(CLIENT) == "absent"
    assert gate.join(CLIENT, at(-10), confirmed=True) == [Waiting(S, CLIENT)]


def test_r10_join_window_is_a_setting() -> None:
    gate = make_gate(GateSettings(opens_before=timedelta(minutes=2)))
    with pytest.raises(RuleError, match="joining opens"):
        gate.join(CLIENT, at(-3), confirmed=True)
    assert gate.join(CLIENT, at(-2), confirmed=True) == [Waiting(S, CLIENT)]


def test_r10_joining_closes_at_the_end() -> None:
    gate = make_gate()
    with pytest.raises(RuleError) as err:
        gate.join(CLIENT, END, confirmed=True)
    assert err.value.rule == "R10"
    assert gate.statistics().phase == "pending"  # the failed join committed nothing
    assert gate.expire(END) == [Ended(S, CLIENT, "time_up"), Ended(S, PROVIDER, "time_up")]


def test_r8_unconfirmed_session_cannot_start() -> None:
    gate = make_gate()
    with pytest.raises(RuleError) as err:
        gate.join(CLIENT, at(-1), confirmed=False)
    assert err.value.rule == "R8"
    assert gate.presence(CLIENT) == "absent"


def test_r10_only_client_and_provider_may_join() -> None:
    gate = make_gate()
    with pytest.raises(Forbidden):
        gate.join(STRANGER, at(0), confirmed=True)
    with pytest.raises(Forbidden):
        gate.check_signal(STRANGER, at(0))
    assert gate.attendance().intervals == ()


def test_joining_twice_is_a_conflict_and_changes_nothing() -> None:
    gate = make_gate()
    gate.join(CLIENT, at(-1), confirmed=True)
    before = gate.attendance()
    with pytest.raises(Conflict):
        gate.join(CLIENT, at(0), confirmed=True)
    assert gate.attendance() == before


# -- R10: no media negotiation before the start -------------------------------------------


def test_r10_no_signal_before_start() -> None:
    gate = make_gate()
    gate.join(CLIENT, at(-1), confirmed=True)
    with pytest.raises(RuleError) as err:
        gate.check_signal(CLIENT, at(0))
    assert err.value.rule == "R10"


def test_r10_signal_after_start_goes_to_the_other_side() -> None:
    gate = started_gate()
    assert gate.check_signal(CLIENT, at(0)) == PROVIDER
    assert gate.check_signal(PROVIDER, at(0)) == CLIENT


def test_signal_while_peer_away_is_a_conflict() -> None:
    gate = started_gate()
    gate.drop(PROVIDER, at(1))
    with pytest.raises(Conflict):
        gate.check_signal(CLIENT, at(1))


# -- drops, rejoins, leaves ---------------------------------------------------------------


def test_r10_drop_tells_peer_and_rejoin_resumes() -> None:
    gate = started_gate()
    assert gate.drop(CLIENT, at(5)) == [PeerAway(S, PROVIDER, CLIENT, at(6))]
    assert gate.next_deadline() == at(6)
    events = gate.join(CLIENT, at(5.5), confirmed=True)
    assert events == [
        Start(S, CLIENT, polite=True, resume=True),
        Start(S, PROVIDER, polite=False, resume=True),
    ]
    assert gate.statistics().resumes == 1
    assert gate.next_deadline() == END


def test_grace_expiry_tells_peer_left_and_later_join_still_resumes() -> None:
    gate = started_gate()
    gate.drop(PROVIDER, at(5))
    assert gate.expire(at(6)) == [Left(S, CLIENT, PROVIDER)]
    assert gate.presence(PROVIDER) == "left"
    events = gate.join(PROVIDER, at(8), confirmed=True)
    assert [(e.to, e.resume) for e in starts(events)] == [(CLIENT, True), (PROVIDER, True)]


def test_a_join_sees_a_grace_that_ran_out_even_if_expire_did_not_run() -> None:
    gate = make_gate(GateSettings(rejoin_grace=timedelta(seconds=60)))
    gate.join(CLIENT, at(0), confirmed=True)
    gate.join(PROVIDER, at(0), confirmed=True)
    gate.drop(PROVIDER, at(1))
    events = gate.join(PROVIDER, at(3), confirmed=True)
    assert events[0] == Left(S, CLIENT, PROVIDER)  # the grace ran out at at(2), first
    assert len(starts(events)) == 2


def test_provider_leave_after_start_ends_the_session() -> None:
    gate = started_gate()
    assert gate.leave(PROVIDER, at(30)) == [
        Ended(S, CLIENT, "provider_left"),
        Ended(S, PROVIDER, "provider_left"),
    ]
    with pytest.raises(Conflict):
        gate.join(CLIENT, at(31), confirmed=True)
    assert gate.next_deadline() is None


def test_client_leave_tells_provider_and_session_goes_on() -> None:
    gate = started_gate()
    assert gate.leave(CLIENT, at(20)) == [Left(S, PROVIDER, CLIENT)]
    assert gate.statistics().phase == "paused"
    assert starts(gate.join(CLIENT, at(21), confirmed=True))[0].resume is True


def test_leave_before_start_only_leaves_the_waiting_room() -> None:
    gate = make_gate()
    gate.join(PROVIDER, at(-5), confirmed=True)
    assert gate.leave(PROVIDER, at(-4)) == []
    assert gate.join(CLIENT, at(-3), confirmed=True) == [Waiting(S, CLIENT)]
    assert gate.join(PROVIDER, at(-2), confirmed=True) == [Waiting(S, PROVIDER)]
    assert len(starts(gate.expire(START))) == 2


def test_both_gone_after_start_ends_the_session() -> None:
    gate = started_gate()
    gate.drop(PROVIDER, at(10))
    assert gate.leave(CLIENT, at(10.5)) == []  # the provider may still come back
    assert gate.expire(at(11)) == [Ended(S, CLIENT, "both_left"), Ended(S, PROVIDER, "both_left")]


def test_end_time_ends_a_running_session_and_closes_intervals() -> None:
    gate = started_gate()
    assert gate.expire(END + timedelta(minutes=3)) == [
        Ended(S, CLIENT, "time_up"),
        Ended(S, PROVIDER, "time_up"),
    ]
    record = gate.attendance()
    assert record.ended_at == END
    assert all(i.left_at == END and i.how == "ended" for i in record.intervals)


def test_close_for_no_show_ends_the_session() -> None:
    gate = make_gate()
    gate.join(PROVIDER, at(-1), confirmed=True)
    assert gate.close(at(10), "no_show") == [
        Ended(S, CLIENT, "no_show"),
        Ended(S, PROVIDER, "no_show"),
    ]
    with pytest.raises(Conflict):
        gate.close(at(11), "cancelled")


def test_clock_stepping_back_is_taken_as_the_last_time_seen() -> None:
    gate = make_gate()
    gate.join(CLIENT, at(0), confirmed=True)
    gate.join(PROVIDER, at(-1), confirmed=True)
    assert gate.attendance().started_at == at(0)


# -- R15: the attendance record -----------------------------------------------------------


def test_r15_attendance_shows_who_joined_by_the_grace() -> None:
    gate = make_gate()
    gate.join(PROVIDER, at(-2), confirmed=True)
    gate.drop(PROVIDER, at(3))
    gate.join(PROVIDER, at(3.5), confirmed=True)
    gate.join(CLIENT, at(12), confirmed=True)
    record = gate.attendance()
    assert record.joined_by(PROVIDER, at(10))
    assert not record.joined_by(CLIENT, at(10))
    assert record.first_joined(CLIENT) == at(12)
    assert record.present_at(START) == frozenset({PROVIDER})
    assert record.present_at(at(3.2)) == frozenset()
    assert record.time_present(PROVIDER, until=at(13)) == timedelta(minutes=14.5)
    assert [(i.how) for i in record.intervals_of(PROVIDER)] == ["dropped", None]


def test_attendance_is_an_immutable_snapshot() -> None:
    gate = make_gate()
    gate.join(CLIENT, at(0), confirmed=True)
    snapshot = gate.attendance()
    gate.leave(CLIENT, at(1))
    assert snapshot.intervals[0].left_at is None
    with pytest.raises(AttributeError):
        snapshot.intervals = ()  # type: ignore[misc]


# -- settings and frames ------------------------------------------------------------------


def test_gate_refuses_naive_times_and_bad_settings() -> None:
    with pytest.raises(ValueError):
        GateSettings(rejoin_grace=timedelta(0))
    with pytest.raises(ValueError):
        JoinGate(session=S, client=CLIENT, provider=PROVIDER, start=END, end=START)
    gate = make_gate()
    with pytest.raises(ValueError):
        gate.join(CLIENT, datetime(2025, 3, 3, 15, 0), confirmed=True)


def test_frames_of_events() -> None:
    assert frame_of(Waiting(S, CLIENT)) == {"t": "live.waiting", "session": S}
    assert frame_of(Start(S, CLIENT, polite=True, resume=False), ice_servers=[]) == {
        "t": "live.start",
        "session": S,
        "polite": True,
        "resume": False,
        "ice_servers": [],
    }
    assert frame_of(Left(S, PROVIDER, CLIENT)) == {"t": "live.left", "session": S, "user": CLIENT}
    assert frame_of(Ended(S, CLIENT, "time_up"))["reason"] == "time_up"
    assert frame_of(PeerAway(S, CLIENT, PROVIDER, at(1)))["until"] == at(1).isoformat()
    with pytest.raises(ValueError):
        frame_of(Start(S, CLIENT, polite=True, resume=False))
