"""R5: the messaging session of eap / bh rooms."""

from __future__ import annotations

import pytest
from rules.story import CLIENT, MIN, NOW, PROVIDER, H, Scenario, make_room

from rooms import messaging
from rooms.booking import book_messaging
from rooms.capabilities import check_send
from rooms.room import SYSTEM
from rooms.sessions import MessagingSession
from server.errors import RuleError
from server.ids import SessionId

ROOM = make_room("eap")


def booked() -> MessagingSession:
    step = book_messaging(ROOM, NOW, CLIENT, session_id=SessionId("m-1"), open_sessions=())
    return step.session


def start(at: object = NOW + MIN) -> MessagingSession:
    step = messaging.apply(booked(), messaging.StartMessaging(), at, CLIENT, room=ROOM)  # type: ignore[arg-type]
    return step.session


def test_r5_client_starts_it_and_both_may_message_until_it_ends() -> None:
    step = messaging.apply(booked(), messaging.StartMessaging(), NOW + MIN, CLIENT, room=ROOM)
    session = step.session
    assert session.state == "started" and session.in_progress(NOW + 2 * MIN)
    assert [n.kind for n in step.notices] == ["messaging_started"]
    assert [(j.kind, j.due) for j in step.schedule] == [("end_messaging", NOW + 31 * MIN)]
    check_send(ROOM, CLIENT, NOW + 2 * MIN, session)
    check_send(ROOM, PROVIDER, NOW + 30 * MIN, session)
    with pytest.raises(RuleError) as err:
        check_send(ROOM, CLIENT, NOW + 31 * MIN, session)
    assert err.value.rule == "R2"


def test_r5_it_ends_after_its_length() -> None:
    session = start()
    with pytest.raises(RuleError) as err:
        messaging.apply(session, messaging.EndMessaging(), NOW + 30 * MIN, SYSTEM, room=ROOM)
    assert err.value.rule == "R5"
    job = session.ends_at
    assert job is not None
    step = messaging.apply(session, messaging.EndMessaging(), job, SYSTEM, room=ROOM)
    assert step.session.state == "ended"
    assert [n.kind for n in step.notices] == ["messaging_ended"]
    assert step.schedule == () and [j.kind for j in step.cancel] == ["end_messaging"]


def test_r5_started_session_cannot_be_cancelled() -> None:
    for who in (CLIENT, PROVIDER):
        with pytest.raises(RuleError) as err:
            messaging.apply(start(), messaging.CancelMessaging(), NOW + 2 * MIN, who, room=ROOM)
        assert err.value.rule == "R5"


def test_r5_booked_session_can_be_cancelled_by_either_side() -> None:
    step = messaging.apply(booked(), messaging.CancelMessaging(), NOW, PROVIDER, room=ROOM)
    assert step.session.state == "cancelled" and step.notices[0].kind == "cancelled"


def test_r5_cannot_switch_to_a_live_session() -> None:
    for session in (booked(), start()):
        with pytest.raises(RuleError) as err:
            messaging.apply(session, messaging.SwitchToLive(), NOW + 2 * MIN, CLIENT, room=ROOM)
        assert err.value.rule == "R5"


def test_r5_only_the_client_starts_it() -> None:
    with pytest.raises(RuleError) as err:
        messaging.apply(booked(), messaging.StartMessaging(), NOW, PROVIDER, room=ROOM)
    assert err.value.rule == "R5"


def test_r5_length_is_a_plan_setting() -> None:
    from dataclasses import replace
    from datetime import timedelta

    from rooms.settings import DEFAULT_SETTINGS

    plans = dict(DEFAULT_SETTINGS.plans)
    plans["eap"] = replace(plans["eap"], messaging_session_length=timedelta(minutes=45))
    settings = replace(DEFAULT_SETTINGS, plans=plans)
    step = book_messaging(
        ROOM, NOW, CLIENT, session_id=SessionId("m-1"), open_sessions=(), settings=settings
    )
    assert step.session.length == timedelta(minutes=45)


def test_r5_a_live_session_can_be_booked_during_a_messaging_session() -> None:
    s = Scenario(room=ROOM)
    s.give(1)
    assert start().state == "started"
    assert s.book(NOW + 72 * H).state == "booked"
