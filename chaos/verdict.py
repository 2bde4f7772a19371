"""The verdict on a drained history: what should hold, and each way it did not.

``expected_state`` is each key's last-writer-wins winner from the history alone;
``violations_of`` compares every region's visible state with it and with the ground
truth the model counted (echoes sent, version regressions). A ``Result`` printed is the
failure report with the seed and the steps to replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chaos.model import World
from chaos.regions import Event, Visible, show
from replicator.apply.selection import EVERYTHING
from replicator.models import Mode


@dataclass(frozen=True)
class Violation:
    # quiesce | record | diverged | not-lww | not-selected | echo | regression | regression-metric
    kind: str
    text: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"


@dataclass(frozen=True)
class Result:
    """A checked history; printed, it is the failure report with the steps to replay."""

    seed: int
    mode: Mode
    violations: list[Violation]
    trace: list[str]

    def __str__(self) -> str:
        return "\n".join(
            [
                f"history seed {self.seed} ({self.mode}) failed:",
                *(f"  ! {violation}" for violation in self.violations),
                f"  reproduce: python -m chaos.checker --seed {self.seed} --histories 1",
                "  steps:",
                *(f"    {line}" for line in self.trace),
            ]
        )


Failure = Result  # a Result that has violations


def expected_state(events: Sequence[Event], mode: Mode) -> dict[str, Visible]:
    """Each key's winner, from the history alone: greatest (version, tombstone, origin) in
    active-active, the single writer's last operation in one-way."""
    winners: dict[str, Event] = {}
    for event in events:
        best = winners.get(event.key)
        if best is None or mode is Mode.ONE_WAY or event.order > best.order:
            winners[event.key] = event
    return {key: event.data for key, event in winners.items() if event.data is not None}


def violations_of(world: World) -> list[Violation]:
    violations: list[Violation] = []
    states = {region: world.state(region) for region in world.regions}
    expected = expected_state(world.events, world.mode)
    if world.rules.selection is EVERYTHING:
        violations += _divergences(states, expected)
    else:
        violations += _unselected(world, states, expected)
    if world.echoes_sent:
        text = f"{world.echoes_sent} echo(es) re-sent to other regions"
        violations.append(Violation("echo", text))
    if world.regressions:
        text = f"{world.regressions} version regression(s) with contract-abiding writers"
        violations.append(Violation("regression", text))
    if world.regressions_reported != world.regressions:
        text = (
            f"is_version_regression counted {world.regressions_reported} regression(s), "
            f"the history holds {world.regressions} (look for [is_version_regression])"
        )
        violations.append(Violation("regression-metric", text))
    return violations


def _divergences(
    states: dict[str, dict[str, Visible]], expected: dict[str, Visible]
) -> list[Violation]:
    violations: list[Violation] = []
    for key in sorted(set(expected).union(*states.values())):
        seen = {region: state.get(key) for region, state in states.items()}
        winner = f"LWW winner of the history: {show(expected.get(key))}"
        first, *others = seen.values()
        if any(data != first for data in others):
            violations.append(Violation("diverged", f"{key}: {_describe(seen)}; {winner}"))
        elif first != expected.get(key):
            violations.append(Violation("not-lww", f"{key}: all hold {show(first)}; {winner}"))
    return violations


def _unselected(
    world: World, states: dict[str, dict[str, Visible]], expected: dict[str, Visible]
) -> list[Violation]:
    """One-way with a selection: the writer holds its history's last state, every other
    region ``replica_of`` it (filter(source) without the excluded attributes)."""
    writers = {event.region for event in world.events}
    selection = world.rules.selection
    violations: list[Violation] = []
    for region, state in states.items():
        for key in sorted(set(expected) | set(state)):
            wanted: Visible | None = expected.get(key)
            if region not in writers:
                wanted = selection.replica_of(wanted, now=0)
            if state.get(key) != wanted:
                text = f"{key}: {region} holds {show(state.get(key))}, expected {show(wanted)}"
                violations.append(Violation("not-selected", text))
    return violations


def _describe(seen: dict[str, Visible | None]) -> str:
    return ", ".join(f"{region} {show(data)}" for region, data in seen.items())
