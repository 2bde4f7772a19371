"""The model's replicators: each lane reads its source stream from its checkpoint and applies.

A batch may be delivered twice, cut short by a crash before its checkpoint, or applied late
by a worker that lost its lease; every write goes through ``World.rules`` and is counted
against the ground truth (echoes sent, version regressions) for the checker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from chaos.lineage import Entry
from chaos.model import World
from chaos.regions import META, Lane, Record, show, version_of
from replicator.apply.rule import is_version_regression
from replicator.apply.writer import target_item
from replicator.models import Change, Mode, Outcome, WireItem, is_tombstone, stored_from_item
from replicator.pipeline.conflicts import entry_key
from replicator.stream.kv import Kv, merge

TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600
FEED_TABLE = "items"


def unread(world: World, lane: Lane) -> int:
    return len(world.regions[lane.source].stream) - lane.checkpoint


def advance(world: World, lane: Lane, size: int, *, how: str = "batch") -> None:
    """Read the next batch from the checkpoint and apply it.

    ``duplicate`` delivers it twice; ``crash`` dies mid-batch (each key's serial run cut
    at a random point) before checkpointing, so the batch is read again later.
    """
    start = lane.checkpoint
    stream = world.regions[lane.source].stream
    end = min(start + size, len(stream))
    # The reader already holds the next page while this one is applied.
    ahead = stream[end : end + size]
    deliver(world, lane, start, end, how=how, crash=how == "crash", ahead=ahead)
    if how == "crash":
        return
    if how == "duplicate":
        deliver(world, lane, start, end, how="again")
    lane.checkpoint = end
    lane.done.append((start, end))


def replay_late(world: World, lane: Lane) -> bool:
    """A worker that lost its lease applies a batch it read before newer ones went in."""
    if len(lane.done) < 2:
        return False
    start, end = lane.done.popleft()
    deliver(world, lane, start, end, how="late")
    return True


def deliver(
    world: World,
    lane: Lane,
    start: int,
    end: int,
    *,
    how: str,
    crash: bool = False,
    ahead: Sequence[Record] = (),
) -> None:
    records = world.regions[lane.source].stream[start:end]
    kv = world.mode is Mode.ACTIVE_ACTIVE
    following = world.rules.batch(ahead, here=lane.source, kv=kv) if ahead else {}
    notes: list[str] = []
    for key, changes in world.rules.batch(records, here=lane.source, kv=kv).items():
        name = changes[0].keys["pk"]["S"]
        if world.rules.ahead(changes, following.get(key, [])):
            notes.append(f"{name} left to the page read ahead")
            lane.handed[name] = merge([*(c.kv for c in changes if c.kv), *_handed(lane, name)])
            continue
        fresh = how in ("batch", "crash", "duplicate")  # not a redelivery of an old batch
        if fresh and (handed := _handed(lane, name)) and changes[0].kv:
            changes[0] = dataclasses.replace(changes[0], kv=merge((*handed, changes[0].kv)))
        cut = world.rng.randint(0, len(changes)) if crash else len(changes)
        notes.extend(_apply(world, lane, change) for change in changes[:cut])
    if crash:
        lane.handed.clear()
    seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
    span = f"seq {seqs[0]}..{seqs[-1]}" if seqs else "nothing"
    world.note(f"{how} {lane} {span}: " + ("; ".join(n for n in notes if n) or "no changes"))


def _handed(lane: Lane, key: str) -> list[Kv]:
    handed = lane.handed.pop(key, None)
    return [handed] if handed is not None else []


def _apply(world: World, lane: Lane, change: Change) -> str:
    incoming = change.incoming
    if lane.source == lane.target and not incoming.tombstone:
        # The local lane writes this region's own tombstones and heals its zombies.
        return _heal(world, lane, change) if change.heals_zombie else ""
    carried = world.regions[lane.source].origins[change.sequence_number]
    if lane.source != carried or lane.source != incoming.origin:
        world.echoes_sent += 1  # star topology: a region sends only its own writes
    target = world.regions[lane.target]
    key = change.keys["pk"]["S"]
    before = target.table.get(key)
    held = world.lineage.state.get((target.name, key))  # the write ``before`` holds
    stored = stored_from_item(before, META)
    outcome = world.rules.decide(stored, incoming, here=target.name, mode=world.mode)
    flags = ""
    if is_version_regression(stored, incoming, here=target.name, mode=world.mode):
        world.regressions_reported += 1
        flags += " [is_version_regression]"
    # The ground truth: a re-create that loses to a tombstone its origin wrote EARLIER.
    # A redelivered create meets its later tombstone too: at-least-once, not a regression.
    if (
        world.mode is Mode.ACTIVE_ACTIVE
        and incoming.recreate
        and stored is not None
        and stored.tombstone
        and stored.origin(target.name) == incoming.origin
        and incoming.seq > stored.seq
        and outcome is Outcome.SUPERSEDED
    ):
        world.regressions += 1
        flags += " [REGRESSION]"
    if outcome is Outcome.APPLIED:
        item = target_item(change, meta=META, expires_at=world.clock + TOMBSTONE_TTL_SECONDS)
        seq = world.mutate(target, key, item, incoming.origin)
        world.lineage.replicated(lane.source, change.sequence_number, target.name, key, seq)
    if change.kv is not None:
        applied = outcome is Outcome.APPLIED
        flags += _judge(world, lane, change, before, held, applied=applied)
    kind = "tombstone" if incoming.tombstone else "re-create" if incoming.recreate else "write"
    over = show(before) + (f" from {stored.origin(target.name)}" if stored else "")
    head = f"{key} {kind} v{incoming.version} seq {int(incoming.seq)}"
    return f"{head} over {over}: {outcome}{flags}"


def _heal(world: World, lane: Lane, change: Change) -> str:
    """DESIGN §4 rule 7: clear a zombie's flags while it is still that zombie."""
    if not world.rules.heal_zombies:
        return ""
    region = world.regions[lane.source]
    key = change.keys["pk"]["S"]
    item = region.table.get(key)
    version = int(change.incoming.version)
    head = f"{key} heal v{version}"
    if item is None or version_of(item) != version or META.deleted not in item:
        return f"{head} over {show(item)}: superseded"
    if is_tombstone(item, META):
        return f"{head} over {show(item)}: superseded"
    healed = {k: v for k, v in item.items() if k not in (META.deleted, META.expires)}
    world.lineage.kept(region.name, key, world.mutate(region, key, healed, region.name))
    return f"{head}: healed"


def _judge(
    world: World,
    lane: Lane,
    change: Change,
    stored: WireItem | None,
    held: int | None,
    *,
    applied: bool,
) -> str:
    """The conflict feed (DESIGN §4b): the product's rule over the item the write met, as
    ALL_OLD returns it (``stored``, holding write ``held``); an entry goes to the detecting
    region's table under its key."""
    here = lane.target
    loss = world.rules.conflict(change, stored, here=here, applied=applied, meta=META)
    if loss is None:
        return ""
    loser, incoming = loss.loser, change.incoming
    # The loser is the incoming write when it has that write's order key: a stored item
    # with the same key is a duplicate, which no case of §4b names.
    lost_incoming = (loser.origin, loser.version, loser.tombstone) == (
        incoming.origin,
        incoming.version,
        incoming.tombstone,
    )
    sent = world.lineage.carried.get((lane.source, change.sequence_number))
    writes = (sent, held) if lost_incoming else (held, sent)
    slot = (here, entry_key(FEED_TABLE, change.keys, loser))
    world.lineage.report(slot, Entry(here, change.keys["pk"]["S"], loss, *writes))
    return (
        f" [feed: loser v{loser.version}{' tombstone' if loser.tombstone else ''} {loser.origin}]"
    )
