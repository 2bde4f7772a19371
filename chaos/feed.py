"""The conflict feed measured against ground truth over random active-active histories.

Each history runs in the model with the product's rule at every apply (``Rules.conflict``,
``apply.conflict.lost_write`` by default, over kv computed as ``stream.kv`` does); once it
has drained, ``chaos.lineage`` says which writes were lost and the tally compares the
entries with them (DESIGN §4b): forks reported, lost writes named, false positives (an
entry whose loser was not lost), duplicates (collapsed in one region's table, or written
by two regions).

A false entry's loser is on the converged line; each is put down to one kind, so that a
deviation from §4b shows as "unexplained": a rescued loser (§4b), a late local tombstone
of a region that had written past it (the REMOVE gap), or a winner that descends from the
loser through a write whose kv forgot it: one over a tombstone TTL had removed, one in the
REMOVE gap, or a whole-item PutItem that dropped ``_rep_kv``. The histories expire
tombstones (a week passes between two rounds of writers); ``--no-tombstone-expiry`` runs
the same seeds without, as the issue describes its histories.

    python -m chaos.checker --feed --histories 2000 --json feed-report.json
    python -m chaos.checker --feed --histories 2000 --no-tombstone-expiry
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
from chaos.lineage import Entry, forks, judged, named, rescued
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
    # Why an entry was false (its loser is on the converged line), one kind each:
    rescued: int = 0  # the loser's line continued in another region and won (§4b)
    moved_on: int = 0  # ... continued in its own region only: a late local tombstone
    own_ancestor: int = 0  # the winner descends from the loser, its kv did not know it:
    through_expiry: int = 0  # ... through a write over an item TTL had removed
    through_gap: int = 0  # ... through a write over nothing in the REMOVE gap
    through_dropped_kv: int = 0  # ... through a PutItem that dropped ``_rep_kv``
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
    def unexplained(self) -> int:
        """False entries of none of the kinds above: a deviation from §4b to look for."""
        explained = self.rescued + self.moved_on + self.through_expiry + self.through_gap
        return self.false_positives - explained - self.through_dropped_kv

    @property
    def meets(self) -> bool:
        return (
            self.fork_share >= FORKS_REPORTED_AT_LEAST
            and self.false_share <= FALSE_POSITIVES_AT_MOST
        )

    def as_json(self) -> dict[str, Any]:
        shares = {"fork_share": self.fork_share, "false_share": self.false_share}
        return {**asdict(self), **shares, "unexplained": self.unexplained}


def measure(
    histories: int,
    seed: int = 0,
    *,
    rules: Rules | None = None,
    puts_keep_kv: bool = False,
    tombstone_expiry: bool = True,
    deadline: float | None = None,
    on_history: Callable[[World], None] | None = None,
) -> Tally:
    """Run ``histories`` active-active histories with seeds ``seed``, ``seed + 1``, ...
    (``chaos.histories.play``: without ``tombstone_expiry``, TTL removes no tombstone)."""
    tally = Tally()
    for history_seed in range(seed, seed + histories):
        if deadline is not None and time.monotonic() > deadline:
            break
        world, stopped = play(
            history_seed,
            mode=Mode.ACTIVE_ACTIVE,
            rules=rules,
            puts_keep_kv=puts_keep_kv,
            tombstone_expiry=tombstone_expiry,
        )
        tally.histories += 1
        if stopped or violations_of(world):
            tally.unjudged += 1
        else:
            judge(world, tally, seed=history_seed)
        if on_history is not None:
            on_history(world)
    return tally


def judge(world: World, tally: Tally, *, seed: int = 0) -> None:
    """Add a drained history's figures to ``tally`` (``seed`` names it in the examples)."""
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
        kind = _false_kind(world, entry, lines[entry.key], tally)
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


def _false_kind(world: World, entry: Entry, line: list[int], tally: Tally) -> str:
    """Why ``entry`` named a write that was not lost (so on the converged ``line``),
    counted in ``tally``; the kinds are exclusive and tried in this order."""
    lineage, events = world.lineage, world.events
    losers = set(judged(entry.loser, entry.key, entry.loss.loser, events))
    winners = judged(entry.winner, entry.key, entry.loss.winner, events)
    paths = [path for w in winners if (path := lineage.path_down(w, losers)) is not None]
    if paths:
        # The winner's kv did not know its own ancestor: which write made it forget?
        tally.own_ancestor += 1
        through = set().union(*paths)
        if through & lineage.after_expiry:
            tally.through_expiry += 1
            return "the winner descends from it through a write over an expired tombstone"
        if through & lineage.blind:
            tally.through_gap += 1
            return "the winner descends from it through a write in the REMOVE gap"
        if through & lineage.dropped_kv:
            tally.through_dropped_kv += 1
            return "the winner descends from it through a PutItem that dropped _rep_kv"
        return "the winner descends from it, unexplained"
    if any(rescued(write, line, events) for write in losers):
        tally.rescued += 1
        return "rescued"
    if losers & set(line[1:]):
        tally.moved_on += 1
        return "its own region wrote past it (a late local tombstone)"
    return "unexplained"


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
        "  its region wrote past it": str(tally.moved_on),
        "  winner descends from it": str(tally.own_ancestor),
        "    via an expired tombstone": str(tally.through_expiry),
        "    via the REMOVE gap": str(tally.through_gap),
        "    via a put dropping kv": str(tally.through_dropped_kv),
        "  unexplained": str(tally.unexplained),
        "duplicates collapsed": str(tally.duplicates),
        "entries in 2+ regions": str(tally.reported_twice),
    }


def table(tallies: dict[str, Tally], *, tombstone_expiry: bool = True) -> Table:
    """One column per kind of writers, one row per figure: it fits an 80-column log."""
    histories = "" if tombstone_expiry else ", no tombstone TTL expiry"
    grid = Table(title=f"conflict feed against ground truth (DESIGN §4b{histories})")
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
    tombstone_expiry: bool = True,
) -> int:
    """``python -m chaos.checker --feed``: both kinds of writers, a table, JSON; 1 if a
    figure misses what CI demands. ``trace`` prints every history's steps, entries marked;
    without ``tombstone_expiry`` the histories' TTL removes no tombstone."""

    def show(world: World) -> None:
        if trace:
            console.print("\n".join(world.trace), markup=False, highlight=False, soft_wrap=True)

    tallies = {
        name: measure(
            histories,
            seed,
            puts_keep_kv=keep,
            tombstone_expiry=tombstone_expiry,
            deadline=deadline,
            on_history=show,
        )
        for name, keep in WRITERS.items()
    }
    console.print(table(tallies, tombstone_expiry=tombstone_expiry))
    for name, tally in tallies.items():
        for line in [*tally.missed[:3], *tally.false[:3]]:
            console.print(f"{name}: {line}", markup=False, highlight=False)
    if path is not None:
        document = {
            "seed": seed,
            "tombstone_expiry": tombstone_expiry,
            "forks_reported_at_least": FORKS_REPORTED_AT_LEAST,
            "false_positives_at_most": FALSE_POSITIVES_AT_MOST,
            "passed": all(tally.meets for tally in tallies.values()),
            "writers": {name: tally.as_json() for name, tally in tallies.items()},
        }
        path.write_text(json.dumps(document, indent=2))
    return 0 if all(tally.meets for tally in tallies.values()) else 1
