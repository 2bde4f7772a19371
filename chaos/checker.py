"""Model-based convergence checker: random histories with faults against the real rules.

Each history runs writers and replicators in the in-memory model (``chaos.model``), with
duplicated, delayed, crashed-and-replayed and late (lost lease) deliveries and TTL expiries,
then stops the writers, drains every replicator and checks that

1. every region shows the same visible state (tombstone == absent, ``_rep_`` ignored);
2. that state is the last-writer-wins winner computed from the history alone;
3. no region re-sent an echo;
4. active-active with writers that keep the contract: no version regression, and
   ``is_version_regression`` (the metric) counts none either.

    python -m chaos.checker --histories 5000 --seed 0
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chaos.model import World
from chaos.regions import META, REGIONS, Event, Visible, show
from chaos.replication import advance, replay_late, unread
from chaos.rules import Rules
from replicator.errors import RecordError
from replicator.models import Mode

# Relative weights of what happens between two replicator reads.
ACTIONS = {
    "put": 24,
    "read": 10,
    "update": 10,
    "delete": 8,
    "batch": 30,
    "duplicate": 5,
    "crash": 4,
    "late": 5,
    "stall": 3,
    "expire-tombstone": 5,
    "expire-live": 2,
}
MAX_BATCH = 4
DRAIN_LIMIT = 5_000  # deliveries; a drain that needs more never quiesces


def mode_for(seed: int) -> Mode:
    """The mode a seed runs in, so that ``--seed S --histories 1`` replays a failure."""
    return Mode.ACTIVE_ACTIVE if seed % 2 == 0 else Mode.ONE_WAY


@dataclass(frozen=True)
class Violation:
    kind: str  # quiesce | record | diverged | not-lww | echo | regression | regression-metric
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


def run_history(
    seed: int,
    *,
    mode: Mode,
    regions: int = 3,
    keys: int = 6,
    steps: int = 40,
    rules: Rules | None = None,
) -> Result:
    """One random history from ``seed``, drained and checked."""
    rng = random.Random(seed)
    world = World(rng, mode=mode, regions=REGIONS[:regions], rules=rules or Rules())
    names = [f"k{i}" for i in range(keys)]
    writers = (
        list(world.regions) if mode is Mode.ACTIVE_ACTIVE else [rng.choice(list(world.regions))]
    )
    world.trace.append(f"mode {mode}, writers {', '.join(writers)}")
    violations: list[Violation] = []
    try:
        # Writers, replicators and faults; then, "a week later", tombstones have expired and
        # the writers come back (re-creating what expired) for a shorter second round.
        for round_steps in (range(steps), range(steps, steps + steps // 4)):
            for step in round_steps:
                world.step = step
                _random_step(world, rng, names, writers)
            world.step = round_steps.stop
            world.trace.append(f"{world.step:>3} --- writers stop, replicators drain")
            if not _drain(world, rng):
                text = f"replicators did not quiesce within {DRAIN_LIMIT} deliveries"
                violations.append(Violation("quiesce", text))
                break
            if round_steps.start == 0:
                _a_week_passes(world, rng)
    except RecordError as exc:
        violations.append(Violation("record", f"a record the model wrote was refused: {exc}"))
    violations.extend(_check(world))
    return Result(seed, mode, violations, world.trace)


def _random_step(world: World, rng: random.Random, names: list[str], writers: list[str]) -> None:
    action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
    # Hot keys: a few keys take most writes, so that conflicts are common.
    key = rng.choices(names, weights=[len(names) - i for i in range(len(names))])[0]
    region = rng.choice(writers)
    if action == "read":
        world.read(region, key)
    elif action in ("put", "update"):
        world.write(region, key, update=action == "update")
    elif action == "delete":
        world.delete(region, key)
    elif action == "expire-live":
        world.delete(region, key, ttl=True)
    elif action == "expire-tombstone":
        expiring = rng.choice(list(world.regions))
        if tombstones := _tombstones(world, expiring):
            world.expire_tombstone(expiring, rng.choice(tombstones))
    else:
        lanes = [lane for lane in world.lanes if lane.stalled_until < world.step]
        lane = rng.choice(lanes) if lanes else None
        if lane is None:
            return
        if action == "stall":
            # Delayed delivery: this target's lane falls behind while the others go on.
            lane.stalled_until = world.step + rng.randint(3, 15)
            world.trace.append(f"{world.step:>3} stall {lane} until step {lane.stalled_until}")
        elif action == "late":
            replay_late(world, lane)
        elif unread(world, lane):
            advance(world, lane, rng.randint(1, MAX_BATCH), how=action)


def _a_week_passes(world: World, rng: random.Random) -> None:
    world.trace.append(f"{world.step:>3} --- a week passes")
    for region in world.regions:
        for key in _tombstones(world, region):
            if rng.random() < 0.7:
                world.expire_tombstone(region, key)


def _tombstones(world: World, region: str) -> list[str]:
    # What TTL may remove: items carrying _rep_expires (tombstones, and unhealed zombies).
    return [key for key, item in world.regions[region].table.items() if META.expires in item]


def _drain(world: World, rng: random.Random) -> bool:
    """Run every replicator until no stream has unread records, faults still possible."""
    for lane in world.lanes:
        lane.stalled_until = -1
    for _ in range(DRAIN_LIMIT):
        pending = [lane for lane in world.lanes if unread(world, lane)]
        if not pending:
            return True
        lane = rng.choice(pending)
        roll = rng.random()
        if roll < 0.05 and replay_late(world, lane):
            continue
        how = "crash" if roll < 0.08 else "duplicate" if roll < 0.12 else "batch"
        advance(world, lane, rng.randint(1, MAX_BATCH), how=how)
    return False


def expected_state(events: Sequence[Event], mode: Mode) -> dict[str, Visible]:
    """Each key's winner, from the history alone: greatest (version, tombstone, origin) in
    active-active, the single writer's last operation in one-way."""
    winners: dict[str, Event] = {}
    for event in events:
        best = winners.get(event.key)
        if best is None or mode is Mode.ONE_WAY or event.order > best.order:
            winners[event.key] = event
    return {key: event.data for key, event in winners.items() if event.data is not None}


def _check(world: World) -> list[Violation]:
    violations: list[Violation] = []
    states = {region: world.state(region) for region in world.regions}
    expected = expected_state(world.events, world.mode)
    for key in sorted(set(expected).union(*states.values())):
        seen = {region: state.get(key) for region, state in states.items()}
        winner = f"LWW winner of the history: {show(expected.get(key))}"
        first, *others = seen.values()
        if any(data != first for data in others):
            violations.append(Violation("diverged", f"{key}: {_describe(seen)}; {winner}"))
        elif first != expected.get(key):
            violations.append(Violation("not-lww", f"{key}: all hold {show(first)}; {winner}"))
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


def _describe(seen: dict[str, Visible | None]) -> str:
    return ", ".join(f"{region} {show(data)}" for region, data in seen.items())


def check(
    histories: int,
    seed: int,
    *,
    deadline: float | None = None,
    max_failures: int = 10,
    ignore: frozenset[str] = frozenset(),
    on_result: Callable[[Result, bool], None] | None = None,
) -> list[Failure]:
    """Run ``histories`` histories with seeds ``seed``, ``seed + 1``, ...; the failures.

    Stops early at ``deadline`` (a ``time.monotonic`` value) or after ``max_failures``;
    violations whose kind is in ``ignore`` do not fail a history.
    """
    failures: list[Failure] = []
    for history_seed in range(seed, seed + histories):
        if deadline is not None and time.monotonic() > deadline:
            break
        result = run_history(history_seed, mode=mode_for(history_seed))
        violations = [v for v in result.violations if v.kind not in ignore]
        if on_result is not None:
            on_result(result, bool(violations))
        if violations:
            failures.append(Failure(result.seed, result.mode, violations, result.trace))
            if len(failures) >= max_failures:
                break
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.checker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--histories", type=int, default=1000, help="how many histories")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first history")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="time budget")
    parser.add_argument("--trace", action="store_true", help="print every history's steps")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KIND",
        help="a violation kind that does not fail a history (repeatable), e.g. not-lww",
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    counts = {"run": 0, "failed": 0}
    started = time.monotonic()
    with Progress(
        TextColumn("histories"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("check", total=args.histories, failed=0)

        def on_result(result: Result, failed: bool) -> None:
            counts["run"] += 1
            counts["failed"] += failed
            progress.update(task, advance=1, failed=counts["failed"])
            if args.trace:
                trace = "\n".join(result.trace)
                progress.console.print(trace, markup=False, highlight=False, soft_wrap=True)

        failures = check(
            args.histories,
            args.seed,
            deadline=started + args.max_seconds,
            ignore=frozenset(args.ignore),
            on_result=on_result,
        )
    for failure in failures[:3]:
        console.print(str(failure), markup=False, highlight=False, soft_wrap=True)
    elapsed = time.monotonic() - started
    summary = f"{counts['run']} histories in {elapsed:.1f} s, {len(failures)} failed"
    if counts["run"] < args.histories and not failures:
        summary += f" (time budget reached before {args.histories})"
    console.print(summary, markup=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
