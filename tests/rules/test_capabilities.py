"""R1, R2, R3, R6, R13: who may read, send and act in a room, by plan and service."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rules.story import ADMIN, CLIENT, MIN, NOW, PROVIDER, STRANGER, H, Scenario, make_room

from rooms import lifecycle
from rooms.capabilities import (
    allowed_modalities,
    check_modality,
    check_read,
    check_send,
    check_session_actor,
)
from rooms.room import SYSTEM
from rooms.sessions import MessagingSession
from server.errors import RuleError
from server.ids import RoomId, SessionId


def _running(room_id: str = "r-1", started: bool = True) -> MessagingSession:
    return MessagingSession(
        SessionId("m-1"),
        RoomId(room_id),
        CLIENT,
        PROVIDER,
        timedelta(minutes=30),
        NOW - 10 * MIN,
        state="started" if started else "booked",
        started_at=NOW - 5 * MIN if started else None,
    )


def test_r1_only_client_and_provider_read_the_room() -> None:
    room = make_room()
    assert check_read(room, CLIENT) == "client"
    assert check_read(room, PROVIDER) == "provider"
    for outsider in (ADMIN, STRANGER):
        with pytest.raises(RuleError) as err:
            check_read(room, outsider)
        assert err.value.rule == "R1"


def test_r1_a_stranger_cannot_send_even_on_an_open_plan() -> None:
    with pytest.raises(RuleError) as err:
        check_send(make_room("self_pay"), STRANGER, NOW)
    assert err.value.rule == "R1"


def test_r1_admin_cannot_cancel_on_a_members_behalf(scenario: Scenario) -> None:
    scenario.confirmed(NOW + 72 * H)
    before = scenario.session
    with pytest.raises(RuleError) as err:
        scenario.do(lifecycle.Cancel(), NOW + MIN, ADMIN)
    assert err.value.rule == "R1"
    assert scenario.session == before
    assert scenario.ledger.held() == 1


def test_r1_message_errors_carry_ids_only() -> None:
    with pytest.raises(RuleError) as err:
        check_read(make_room(), STRANGER)
    assert str(STRANGER) in err.value.message and "r-1" in err.value.message


def test_r2_self_pay_messages_any_time() -> None:
    check_send(make_room("self_pay"), CLIENT, NOW)
    check_send(make_room("self_pay"), PROVIDER, NOW + timedelta(hours=3))


def test_r2_org_messages_only_if_the_plan_includes_messaging() -> None:
    check_send(make_room("org", messaging_included=True), CLIENT, NOW)
    with pytest.raises(RuleError) as err:
        check_send(make_room("org", messaging_included=False), CLIENT, NOW)
    assert err.value.rule == "R2"


@pytest.mark.parametrize("plan", ["eap", "bh"])
def test_r2_eap_and_bh_message_only_during_a_messaging_session(plan: str) -> None:
    room = make_room(plan)  # type: ignore[arg-type]
    for messaging in (None, _running(started=False)):
        with pytest.raises(RuleError) as err:
            check_send(room, CLIENT, NOW, messaging)
        assert err.value.rule == "R2"
    check_send(room, CLIENT, NOW, _running())
    check_send(room, PROVIDER, NOW, _running())
    with pytest.raises(RuleError) as err:  # its length has run out
        check_send(room, CLIENT, NOW + 26 * MIN, _running())
    assert err.value.rule == "R2"


def test_r2_a_messaging_session_of_another_room_does_not_count() -> None:
    with pytest.raises(RuleError) as err:
        check_send(make_room("eap"), CLIENT, NOW, _running("r-other"))
    assert err.value.rule == "R2"


@pytest.mark.parametrize("plan", ["self_pay", "org", "eap", "bh"])
def test_r3_psychiatry_refuses_async_messages_on_every_plan(plan: str) -> None:
    room = make_room(plan, "psychiatry", messaging_included=True)  # type: ignore[arg-type]
    with pytest.raises(RuleError) as err:
        check_send(room, CLIENT, NOW, _running())
    assert err.value.rule == "R3"
    assert "psychiatry" in err.value.message


def test_r3_psychiatry_is_video_only() -> None:
    room = make_room("self_pay", "psychiatry")
    assert allowed_modalities(room) == {"video"}
    check_modality(room, "video")
    for modality in ("audio", "chat"):
        with pytest.raises(RuleError) as err:
            check_modality(room, modality)  # type: ignore[arg-type]
        assert err.value.rule == "R3"


def test_r6_therapy_rooms_offer_video_audio_and_chat() -> None:
    assert allowed_modalities(make_room("eap")) == {"video", "audio", "chat"}


def test_r6_a_plan_without_a_modality_refuses_it() -> None:
    from dataclasses import replace

    from rooms.settings import DEFAULT_SETTINGS

    plans = dict(DEFAULT_SETTINGS.plans)
    plans["bh"] = replace(plans["bh"], live_modalities=frozenset({"video", "audio"}))
    settings = replace(DEFAULT_SETTINGS, plans=plans)
    with pytest.raises(RuleError) as err:
        check_modality(make_room("bh"), "chat", settings)
    assert err.value.rule == "R6"


def test_r13_client_and_provider_may_act_on_sessions_nobody_else() -> None:
    room = make_room()
    assert check_session_actor(room, CLIENT) == "client"
    assert check_session_actor(room, PROVIDER) == "provider"
    with pytest.raises(RuleError) as err:
        check_session_actor(room, SYSTEM)
    assert err.value.rule == "R13"
    with pytest.raises(RuleError) as err:
        check_session_actor(room, ADMIN)
    assert err.value.rule == "R1"
