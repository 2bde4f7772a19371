"""Random histories: writers, replicators and faults driven by one seed, then drained.

Between two replicator reads anything in ``ACTIONS`` may happen: application reads, puts,
updates and deletes, duplicated, crashed, stalled and late (lost lease) deliveries, TTL
expiries. ``run_history`` then stops the writers, drains every lane and returns the verdict.
"""

from __future__ import annotations

import random

from chaos.model import World
from chaos.regions import META, REGIONS
from chaos.replication import advance, replay_late, unread
from chaos.rules import Rules
from chaos.verdict import Result, Violation, violations_of
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
    world, stopped = play(seed, mode=mode, regions=regions, keys=keys, steps=steps, rules=rules)
    return Result(seed, mode, stopped + violations_of(world), world.trace)


def play(
    seed: int,
    *,
    mode: Mode,
    regions: int = 3,
    keys: int = 6,
    steps: int = 40,
    rules: Rules | None = None,
    puts_keep_kv: bool = False,
    tombstone_expiry: bool = True,
) -> tuple[World, list[Violation]]:
    """One random history from ``seed``, drained, and what stopped it early if anything.

    Without ``tombstone_expiry`` TTL never removes a tombstone; the random draws stay the
    same, so a seed's history is the same one up to where an expiry would have happened.
    """
    rng = random.Random(seed)
    world = World(
        rng, mode=mode, regions=REGIONS[:regions], rules=rules or Rules(), puts_keep_kv=puts_keep_kv
    )
    names = [f"k{i}" for i in range(keys)]
    writers = (
        list(world.regions) if mode is Mode.ACTIVE_ACTIVE else [rng.choice(list(world.regions))]
    )
    world.trace.append(f"mode {mode}, writers {', '.join(writers)}")
    stopped: list[Violation] = []
    try:
        # Writers, replicators and faults; then, "a week later", tombstones have expired and
        # the writers come back (re-creating what expired) for a shorter second round.
        for round_steps in (range(steps), range(steps, steps + steps // 4)):
            for step in round_steps:
                world.step = step
                _random_step(world, rng, names, writers, expiry=tombstone_expiry)
            world.step = round_steps.stop
            world.trace.append(f"{world.step:>3} --- writers stop, replicators drain")
            if not _drain(world, rng):
                text = f"replicators did not quiesce within {DRAIN_LIMIT} deliveries"
                stopped.append(Violation("quiesce", text))
                break
            if round_steps.start == 0:
                _a_week_passes(world, rng, expiry=tombstone_expiry)
    except RecordError as exc:
        text = f"a record the model wrote was refused: {exc}"
        stopped.append(Violation("record", text))
    return world, stopped


def _random_step(
    world: World, rng: random.Random, names: list[str], writers: list[str], *, expiry: bool
) -> None:
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
            expired = rng.choice(tombstones)
            if expiry:
                world.expire_tombstone(expiring, expired)
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


def _a_week_passes(world: World, rng: random.Random, *, expiry: bool) -> None:
    world.trace.append(f"{world.step:>3} --- a week passes{'' if expiry else ' (TTL off)'}")
    for region in world.regions:
        for key in _tombstones(world, region):
            if rng.random() < 0.7 and expiry:
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
