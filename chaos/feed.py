"""The conflict feed measured against ground truth over random active-active histories.

Each history runs in the model with the product's rule at every apply (``Rules.conflict``,
``apply.conflict.lost_write`` by default, over kv computed as ``stream.kv`` does); once it
has drained, ``chaos.lineage`` says which writes were lost and the tally compares the
entries with them (DESIGN §4b): forks reported, lost writes named, false positives (an
entry whose loser was not lost), duplicates (collapsed in one region's table, or written
by two regions).

    python -m chaos.checker --feed --histories 2000 --json feed-report.json
    python -m chaos.checker --feed --seed 248 --histories 1 --trace   # one history's steps
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chaos.histories import play
from chaos.lineage import Lineage, forks, named, rescued
from chaos.model import World
from chaos.regions import Event
from chaos.rules import Rules
from chaos.verdict import violations_of
from replicator.apply.conflict import Side
from replicator.models import Mode

EXAMPLES_KEPT = 10
# What CI demands of the product's rule (issue 23): the share of forks with an entry, and
# of entries whose loser was not lost.
FORKS_REPORTED_AT_LEAST = 0.99
FALSE_POSITIVES_AT_MOST = 0.02
# §4b measures both kinds of PutItem writers; an UpdateItem keeps ``_rep_kv`` either way.
WRITERS = {"PutItem drops _rep_kv": False, "PutItem keeps _rep_kv": True}


@dataclass
class Tally:
    histories: int = 0
    unjudged: int = 0  # histories that failed the convergence check: no ground truth
    unconverged: int = 0  # keys whose regions hold different writes (visibly equal)
    forks: int = 0
    forks_reported: int = 0
    lost: int = 0
    lost_named: int = 0
    entries: int = 0
    false_positives: int = 0
    rescued: int = 0  # false positives whose loser's line continued in another region and won
    own_ancestor: int = 0  # false positives whose winner descends from the loser
    through_nothing: int = 0  # ... through a write that met no item (tombstone expired)
    duplicates: int = 0  # an entry collapsed onto the same one in the same region
    reported_twice: int = 0  # an entry key written by two regions or more
    # The first histories that missed a fork or reported a write that was not lost.
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def fork_share(self) -> float:
        return self.forks_reported / self.forks if self.forks else 1.0

    @property
    def false_share(self) -> float:
        return self.false_positives / self.entries if self.entries else 0.0

    @property
    def meets(self) -> bool:
        return (
            self.fork_share >= FORKS_REPORTED_AT_LEAST
            and self.false_share <= FALSE_POSITIVES_AT_MOST
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "fork_share": self.fork_share, "false_share": self.false_share}


def measure(
    histories: int,
    seed: int = 0,
    *,
    rules: Rules | None = None,
    puts_keep_kv: bool = False,
    deadline: float | None = None,
    on_history: Callable[[World], None] | None = None,
) -> Tally:
    """Run ``histories`` active-active histories with seeds ``seed``, ``seed + 1``, ..."""
    tally = Tally()
    for history_seed in range(seed, seed + histories):
        if deadline is not None and time.monotonic() > deadline:
            break
        world, stopped = play(
            history_seed, mode=Mode.ACTIVE_ACTIVE, rules=rules, puts_keep_kv=puts_keep_kv
        )
        tally.histories += 1
        if stopped or violations_of(world):
            tally.unjudged += 1
        else:
            _judge(world, history_seed, tally)
        if on_history is not None:
            on_history(world)
    return tally


def _judge(world: World, seed: int, tally: Tally) -> None:
    lineage, events = world.lineage, world.events
    lost: set[int] = set()
    lines: dict[str, list[int]] = {}
    for key in sorted({event.key for event in world.events}):
        final = lineage.converged(key, list(world.regions))
        if final is None:
            tally.unconverged += 1  # regions hold different writes: no ground truth
        line = lines[key] = lineage.line(final)
        lost |= {i for i, event in enumerate(events) if event.key == key and i not in line}
    tally.duplicates += lineage.duplicates
    per_key = Counter(entry_key for _, entry_key in lineage.entries)
    tally.reported_twice += sum(1 for count in per_key.values() if count > 1)
    reached: set[int] = set()
    for entry in lineage.entries.values():
        tally.entries += 1
        candidates = set(named(entry.key, entry.loss.loser, events))
        if candidates & lost:
            reached |= candidates & lost
            continue
        tally.false_positives += 1
        winners = named(entry.key, entry.loss.winner, events)
        kind = "other"
        if descends := [w for w in winners if candidates & set(lineage.line(w))]:
            # The winner's kv did not know it: through a write that met no item?
            kind = "the winner descends from it"
            tally.own_ancestor += 1
            if any(_through_nothing(lineage, w, candidates) for w in descends):
                kind += " through a write over no item (expired tombstone, REMOVE gap)"
                tally.through_nothing += 1
        elif any(rescued(write, lines[entry.key], events) for write in candidates):
            kind = "rescued"
            tally.rescued += 1
        if len(tally.false) < EXAMPLES_KEPT:
            loser, winner = entry.loss.loser, entry.loss.winner
            tally.false.append(
                f"seed {seed}: {entry.region} named {entry.key} {_side(loser)} "
                f"(winner {_side(winner)}), not lost: {kind}"
            )
    tally.lost += len(lost)
    tally.lost_named += len(reached)
    for fork in forks(lost, lineage):
        tally.forks += 1
        if fork & reached:
            tally.forks_reported += 1
        elif len(tally.missed) < EXAMPLES_KEPT:
            writes = ", ".join(_event(events[i]) for i in sorted(fork))
            tally.missed.append(f"seed {seed}: fork {writes} not reported")


def _through_nothing(lineage: Lineage, winner: int, losers: set[int]) -> bool:
    """Whether a write between ``winner`` and the loser it descends from met no item."""
    for write in lineage.line(winner):
        if write in losers:
            return False
        if write in lineage.blind:
            return True
    return False


def _side(side: Side) -> str:
    return f"{side.origin} v{side.version}{' tombstone' if side.tombstone else ''}"


def _event(event: Event) -> str:
    return f"{event.key} {event.region} v{event.version}{' delete' if event.tombstone else ''}"


def _rows(tally: Tally) -> dict[str, str]:
    def share(part: int, whole: int) -> str:
        return f"{part} ({part / whole:.2%})" if whole else str(part)

    return {
        "histories judged": f"{tally.histories - tally.unjudged} of {tally.histories}",
        "forks": str(tally.forks),
        "forks reported": share(tally.forks_reported, tally.forks),
        "lost writes": str(tally.lost),
        "lost writes named": share(tally.lost_named, tally.lost),
        "entries": str(tally.entries),
        "false positives": share(tally.false_positives, tally.entries),
        "  rescued losers": str(tally.rescued),
        "  winner descends from it": str(tally.own_ancestor),
        "    via a write over no item": str(tally.through_nothing),
        "duplicates collapsed": str(tally.duplicates),
        "entries in 2+ regions": str(tally.reported_twice),
    }


def table(tallies: dict[str, Tally]) -> Table:
    """One column per kind of writers, one row per figure: it fits an 80-column log."""
    grid = Table(title="conflict feed against ground truth (DESIGN §4b)")
    grid.add_column("")
    for name in tallies:
        grid.add_column(name, justify="right")
    columns = [_rows(tally) for tally in tallies.values()]
    for label in _rows(Tally()):
        grid.add_row(label, *(column[label] for column in columns))
    return grid


def report(
    histories: int,
    seed: int,
    *,
    deadline: float,
    path: Path | None,
    console: Console,
    trace: bool = False,
) -> int:
    """``python -m chaos.checker --feed``: both kinds of writers, a table, JSON; 1 if a
    figure misses what CI demands. ``trace`` prints every history's steps, entries marked."""

    def show(world: World) -> None:
        if trace:
            console.print("\n".join(world.trace), markup=False, highlight=False, soft_wrap=True)

    tallies = {
        name: measure(histories, seed, puts_keep_kv=keep, deadline=deadline, on_history=show)
        for name, keep in WRITERS.items()
    }
    console.print(table(tallies))
    for name, tally in tallies.items():
        for line in [*tally.missed[:3], *tally.false[:3]]:
            console.print(f"{name}: {line}", markup=False, highlight=False)
    if path is not None:
        document = {
            "seed": seed,
            "forks_reported_at_least": FORKS_REPORTED_AT_LEAST,
            "false_positives_at_most": FALSE_POSITIVES_AT_MOST,
            "passed": all(tally.meets for tally in tallies.values()),
            "writers": {name: tally.as_json() for name, tally in tallies.items()},
        }
        path.write_text(json.dumps(document, indent=2))
    return 0 if all(tally.meets for tally in tallies.values()) else 1
