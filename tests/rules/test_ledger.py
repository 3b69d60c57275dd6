"""R7, R11, R12, R14: the credit ledger and billing periods, to the credit and the cent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rules.story import CLIENT, NOW, make_room

from rooms.ledger import CreditLedger, LedgerEntry, grant, purchase, replay
from rooms.periods import close_period, open_period, period_containing, period_end_job
from server.errors import RuleError
from server.ids import SessionId

ROOM = make_room("self_pay")
MAY = period_containing(NOW)


def test_r12_billing_period_is_a_calendar_month() -> None:
    assert (MAY.id, MAY.start, MAY.end) == (
        "2026-05",
        datetime(2026, 5, 1, tzinfo=UTC),
        datetime(2026, 6, 1, tzinfo=UTC),
    )
    assert period_containing(datetime(2026, 12, 31, 23, tzinfo=UTC)).next().id == "2027-01"
    assert period_end_job(ROOM, MAY).due == MAY.end


def test_r12_self_pay_gets_its_plan_credits_each_period() -> None:
    ledger = CreditLedger(ROOM.id).post(*open_period(ROOM, CreditLedger(ROOM.id), MAY, NOW))
    assert ledger.available("plan") == 4
    assert open_period(ROOM, ledger, MAY, NOW) == ()  # granted once
    assert open_period(make_room("eap"), CreditLedger(ROOM.id), MAY, NOW) == ()


def test_r12_unused_plan_credits_lapse_and_bought_ones_do_not() -> None:
    ledger = CreditLedger(ROOM.id).post(*open_period(ROOM, CreditLedger(ROOM.id), MAY, NOW))
    bought, _ = purchase(ROOM.id, CLIENT, 12_000, NOW)
    ledger = ledger.post(bought)
    ledger = ledger.post(ledger.reserve(SessionId("s-1"), NOW))  # plan credit first
    assert ledger.held_by(SessionId("s-1")) == "plan"
    entries = close_period(ROOM, ledger, MAY, MAY.end)
    assert [(e.kind, e.credits, e.period) for e in entries] == [
        ("lapse", 3, "2026-05"),
        ("grant", 4, "2026-06"),
    ]
    ledger = ledger.post(*entries)
    assert ledger.available("plan") == 4 and ledger.available("kept") == 1
    assert ledger.held() == 1  # the booked session keeps its credit
    assert close_period(ROOM, ledger, MAY, MAY.end) == ()  # a second firing does nothing


def test_r12_period_cannot_close_early() -> None:
    with pytest.raises(RuleError) as err:
        close_period(ROOM, CreditLedger(ROOM.id), MAY, NOW)
    assert err.value.rule == "R12"


def test_r11_released_credit_returns_to_its_pool() -> None:
    ledger = CreditLedger(ROOM.id).post(grant(ROOM.id, 1, NOW, "plan", "2026-05"))
    ledger = ledger.post(ledger.reserve(SessionId("s-1"), NOW))
    ledger = ledger.post(ledger.settle(SessionId("s-1"), "release", NOW, "R11"))
    assert ledger.available("plan") == 1 and ledger.held() == 0


def test_r7_a_session_holds_at_most_one_credit_and_only_its_own() -> None:
    ledger = CreditLedger(ROOM.id).post(grant(ROOM.id, 2, NOW))
    ledger = ledger.post(ledger.reserve(SessionId("s-1"), NOW))
    with pytest.raises(RuleError):
        ledger.post(LedgerEntry("reserve", ROOM.id, "kept", 1, NOW, "R7", SessionId("s-1")))
    with pytest.raises(RuleError):
        ledger.settle(SessionId("s-2"), "consume", NOW, "R10")
    with pytest.raises(RuleError):
        ledger.post(LedgerEntry("lapse", ROOM.id, "kept", 2, NOW, "R12"))


def test_r14_charges_have_stable_unique_keys() -> None:
    _, first = purchase(ROOM.id, CLIENT, 12_000, NOW, SessionId("s-1"))
    _, again = purchase(ROOM.id, CLIENT, 12_000, NOW, SessionId("s-1"))
    _, other = purchase(ROOM.id, CLIENT, 12_000, NOW, SessionId("s-2"))
    assert first.key == again.key != other.key
    assert isinstance(first.amount_cents, int)


# -- property: random operations keep the ledger consistent --------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["grant", "buy", "reserve", "release", "consume", "forfeit", "close"]),
        st.integers(0, 4),
    ),
    max_size=40,
)


@given(ops)
def test_r12_ledger_balance_never_negative_and_is_the_sum_of_entries(
    steps: list[tuple[str, int]],
) -> None:
    ledger = CreditLedger(ROOM.id)
    period = MAY
    for op, n in steps:
        session = SessionId(f"s-{n}")
        before = ledger
        try:
            match op:
                case "grant":
                    ledger = ledger.post(*open_period(ROOM, ledger, period, NOW))
                case "buy":
                    ledger = ledger.post(purchase(ROOM.id, CLIENT, 100, NOW, session)[0])
                case "reserve":
                    ledger = ledger.post(ledger.reserve(session, NOW))
                case "release" | "consume" | "forfeit":
                    ledger = ledger.post(ledger.settle(session, op, NOW, "R7"))
                case "close":
                    ledger = ledger.post(*close_period(ROOM, ledger, period, period.end))
                    period = period.next()
        except RuleError:
            assert ledger is before
        for pool in ("plan", "kept"):
            assert ledger.available(pool) >= 0  # type: ignore[arg-type]
        assert ledger.held() >= 0
        assert ledger.available() == sum(e.available_delta() for e in ledger.entries)
        held = sum(1 for k in range(5) if ledger.held_by(SessionId(f"s-{k}")) is not None)
        assert held == ledger.held()
    assert replay(ROOM.id, ledger.entries) == ledger
