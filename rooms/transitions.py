"""Transition tables as data, the lookup every lifecycle shares, and their Mermaid rendering.

A lifecycle is a tuple of `Transition` rows, as h11 keeps its
EVENT_TRIGGERED_TRANSITIONS: code, tests and docs read the same rows. A row says:
in state `source`, event `event` by one of the parties `by` moves to `target`,
under rule `rule`, when the named guard `when` holds (None: always). Rows are
tried in order; the first whose party and guard match wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rooms.room import Party
from server.errors import RuleError

StateT = TypeVar("StateT", bound=str)
EventT = TypeVar("EventT", bound=str)
GuardT = TypeVar("GuardT", bound=str)

_PARTY_ORDER: tuple[Party, ...] = ("client", "provider", "system")


@dataclass(frozen=True)
class Transition(Generic[StateT, EventT, GuardT]):
    source: StateT
    event: EventT
    target: StateT
    by: frozenset[Party]
    rule: str
    when: GuardT | None = None

    def label(self) -> str:
        who = " or ".join(p for p in _PARTY_ORDER if p in self.by)
        guard = "" if self.when is None else ", " + self.when.replace("_", " ")
        return f"{self.event} by {who}{guard} ({self.rule})"


def select(
    table: Sequence[Transition[StateT, EventT, GuardT]],
    state: StateT,
    event: EventT,
    party: Party,
    guard_holds: Callable[[GuardT], bool],
    *,
    subject: str,
    refusal_rule: str,
    who_rule: str | None = None,
) -> Transition[StateT, EventT, GuardT]:
    """The row that applies, or a RuleError saying why none does (nothing has changed).

    No row for (state, event): `refusal_rule`. Rows, but none for this party:
    `who_rule` (default: the first row's rule). Rows for the party, but no guard
    holds: the rule of the last row tried.
    """
    rows = [t for t in table if t.source == state and t.event == event]
    if not rows:
        raise RuleError(refusal_rule, f"{subject} is {state}: cannot {event}")
    mine = [t for t in rows if party in t.by]
    if not mine:
        raise RuleError(who_rule or rows[0].rule, f"{subject}: the {party} cannot {event}")
    for row in mine:
        if row.when is None or guard_holds(row.when):
            return row
    guard = mine[-1].when or ""
    raise RuleError(mine[-1].rule, f"{subject}: cannot {event}, not {guard.replace('_', ' ')}")


def _node(state: str) -> str:
    return state.replace("-", "_")


def render_mermaid(
    table: Iterable[Transition[StateT, EventT, GuardT]],
    states: Sequence[StateT],
    initial: tuple[StateT, str],
    finals: Iterable[StateT],
) -> str:
    """The table as a Mermaid stateDiagram; rows between the same two states share an edge."""
    lines = ["stateDiagram-v2"]
    for state in states:
        if _node(state) != state:
            lines.append(f'    state "{state}" as {_node(state)}')
    start, how = initial
    lines.append(f"    [*] --> {_node(start)}: {how}")
    edges: dict[tuple[str, str], list[str]] = {}
    for row in table:
        labels = edges.setdefault((row.source, row.target), [])
        if row.label() not in labels:
            labels.append(row.label())
    for (source, target), labels in edges.items():
        lines.append(f"    {_node(source)} --> {_node(target)}: {'<br/>'.join(labels)}")
    final_set = set(finals)
    for state in states:
        if state in final_set:
            lines.append(f"    {_node(state)} --> [*]")
    return "\n".join(lines) + "\n"
