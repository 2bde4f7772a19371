"""The replication protocol in memory: tables, streams, application writers, replicator lanes.

Each region has a table (items in the wire format, as DynamoDB stores them) and a stream that
records every mutation as NEW_AND_OLD_IMAGES would, so replicator writes really echo. The
replicator runs OUR pure rules (``to_change``, ``coalesce``, ``decide``, ``target_item``),
reached through ``Rules`` so that a teeth test can swap one for a deliberately broken variant.
One ``random.Random`` drives everything: a seed replays a history exactly.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from replicator.apply.rule import decide, is_version_regression
from replicator.apply.writer import target_item
from replicator.models import (
    Change,
    Incoming,
    ItemKey,
    Meta,
    Mode,
    Outcome,
    Stored,
    WireItem,
    is_tombstone,
    number,
    stored_from_item,
)
from replicator.records import Skip, coalesce, coalesces_into, to_change

REGIONS = ("ap-southeast-2", "eu-west-1", "us-east-1")
META = Meta(version="version")
TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600
# A worker that lost its lease can only still hold batches it read during its last lease.
LATE_BATCHES_KEPT = 6
SERVICE_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}

Record = dict[str, Any]
Visible = dict[str, dict[str, Any]]  # an item's user data: no _rep_ attributes


class BatchRule(Protocol):
    def __call__(self, records: Iterable[Record], *, here: str) -> dict[ItemKey, list[Change]]: ...


class DecideRule(Protocol):
    def __call__(
        self, stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode
    ) -> Outcome: ...


def filter_then_coalesce(records: Iterable[Record], *, here: str) -> dict[ItemKey, list[Change]]:
    """DESIGN §4 as the pipeline does it: filter each record, drop the skips, coalesce."""
    changes: list[Change] = []
    for record in records:
        result = to_change(record, here=here, meta=META)
        if not isinstance(result, Skip):
            changes.append(result)
    return coalesce(changes)


class AheadRule(Protocol):
    def __call__(self, run: Sequence[Change], following: Sequence[Change]) -> bool: ...


@dataclass(frozen=True)
class Rules:
    """The rules under test; the defaults are the real ones."""

    batch: BatchRule = filter_then_coalesce
    decide: DecideRule = decide
    local_tombstones: bool = True  # DESIGN §4 rule 6, active-active only
    heal_zombies: bool = True  # DESIGN §4 rule 7: the local lane clears a zombie's flags
    # Whether a key's run is left to its next run, in the page read ahead.
    ahead: AheadRule = coalesces_into


@dataclass(frozen=True, slots=True)
class Event:
    """An application write or delete; a TTL expiry of a live item is a delete too."""

    region: str
    key: str
    version: int
    tombstone: bool
    data: Visible | None  # what readers see after it; None for a delete

    @property
    def order(self) -> tuple[int, bool, str]:
        return (self.version, self.tombstone, self.region)


@dataclass
class Region:
    name: str
    next_seq: int
    table: dict[str, WireItem] = field(default_factory=dict)
    stream: list[Record] = field(default_factory=list)
    # SequenceNumber -> region whose write the mutation carries: ground truth, not metadata.
    origins: dict[str, str] = field(default_factory=dict)


@dataclass
class Lane:
    """One replicator path, source stream -> target table, with its own checkpoint.

    ``source == target`` is the local lane that writes this region's own tombstones and
    heals its zombies.
    """

    source: str
    target: str
    checkpoint: int = 0  # index of the first unread record of the source stream
    stalled_until: int = -1
    done: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=LATE_BATCHES_KEPT))

    def __str__(self) -> str:
        target = "self" if self.source == self.target else self.target
        return f"{self.source}->{target}"


def user_data(item: WireItem) -> Visible:
    return {name: value for name, value in item.items() if not name.startswith(META.prefix)}


def visible(item: WireItem | None) -> Visible | None:
    """What a reader who skips ``_rep_deleted`` items (as the README says) sees.

    Stricter than a tombstone (``is_tombstone``): an unhealed zombie is invisible too, so
    a history converges only once every zombie is healed.
    """
    if item is None or META.deleted in item:
        return None
    return user_data(item)


def version_of(item: WireItem) -> int:
    value = number(item.get(META.version))
    return 0 if value is None else int(value)


def show(item: WireItem | Visible | None) -> str:
    if item is None:
        return "absent"
    if is_tombstone(item, META):
        return f"tombstone v{version_of(item)}"
    data = item.get("data", {}).get("S", "?")
    zombie = " (zombie)" if META.deleted in item else ""
    return f"v{version_of(item)} {data}{zombie}"


class World:
    """All regions, their replicators and the history so far."""

    def __init__(
        self, rng: random.Random, *, mode: Mode, regions: Iterable[str], rules: Rules
    ) -> None:
        self.rng = rng
        self.mode = mode
        self.rules = rules
        # Starting just under 100 makes sequence numbers change length mid-history, where
        # an unpadded string comparison would put "100" before "99".
        self.regions = {name: Region(name, next_seq=rng.randint(90, 99)) for name in regions}
        local = mode is Mode.ACTIVE_ACTIVE and rules.local_tombstones
        self.lanes = [
            Lane(source, target)
            for source in self.regions
            for target in self.regions
            if source != target or local
        ]
        self.clock = 1_700_000_000
        self.step = 0
        self.events: list[Event] = []
        self.trace: list[str] = []
        self.echoes_sent = 0
        self.regressions = 0  # re-creates that lost to their own origin's earlier tombstone
        self.regressions_reported = 0  # what is_version_regression counted
        self._own_last: dict[tuple[str, str], int] = {}
        # The version an application last read per (region, key): a mapper's update is
        # conditioned on it, however long ago it read.
        self._reads: dict[tuple[str, str], int] = {}
        self._highest: dict[str, int] = {}
        self._tokens = 0

    # -- tables and streams -------------------------------------------------------------

    def mutate(
        self, region: Region, key: str, new: WireItem | None, origin: str, *, ttl: bool = False
    ) -> str:
        """Change one item and append the stream record DynamoDB would; returns its seq."""
        old = region.table.get(key)
        if new is None:
            del region.table[key]
        else:
            region.table[key] = new
        self.clock += 1
        seq = str(region.next_seq)
        region.next_seq += self.rng.randint(1, 3)  # real sequence numbers have gaps
        body: dict[str, Any] = {
            "Keys": {"pk": {"S": key}},
            "SequenceNumber": seq,
            "ApproximateCreationDateTime": self.clock,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if new is not None:
            body["NewImage"] = new
        if old is not None:
            body["OldImage"] = old
        event = "REMOVE" if new is None else "INSERT" if old is None else "MODIFY"
        record: Record = {"eventName": event, "awsRegion": region.name, "dynamodb": body}
        if ttl:
            record["userIdentity"] = dict(SERVICE_IDENTITY)
        region.stream.append(record)
        region.origins[seq] = origin
        return seq

    def state(self, region: str) -> dict[str, Visible]:
        table = self.regions[region].table
        return {key: data for key, item in table.items() if (data := visible(item)) is not None}

    def pending(self, key: str) -> bool:
        """Whether any lane has yet to read a record of ``key``."""
        for lane in self.lanes:
            stream = self.regions[lane.source].stream
            if any(r["dynamodb"]["Keys"]["pk"]["S"] == key for r in stream[lane.checkpoint :]):
                return True
        return False

    # -- the application ----------------------------------------------------------------

    def read(self, region: str, key: str) -> None:
        """The application reads the item, as a mapper does before it updates it."""
        item = self.regions[region].table.get(key)
        if item is None or visible(item) is None:
            self._reads.pop((region, key), None)
        else:
            self._reads[(region, key)] = version_of(item)
            self._note(f"app read {region} {key} {show(item)}")

    def write(self, region: str, key: str, *, update: bool) -> None:
        """PutItem of a full item, or an UpdateItem that keeps every other attribute.

        An update after an earlier read is a mapper's: conditioned on the version read, it
        may land on a tombstone that arrived since and keep its ``_rep_deleted`` (a zombie).
        """
        table = self.regions[region].table
        old = table.get(key)
        live = visible(old) is not None
        # Most updates go by the version the application holds from its last read or
        # write (however stale); the others read first.
        held = update and self.rng.random() < 0.7
        read = self._reads.pop((region, key), None) if held else None
        if read is not None:
            if old is None or version_of(old) != read:
                self._note(f"app update {region} {key} if v{read}: condition failed")
                return
            version = read + 1
            if self.mode is Mode.ACTIVE_ACTIVE and version <= self._own_last.get((region, key), 0):
                return  # the contract: this region never writes below what it wrote before
        else:
            update = update and live
            version = self._next_version(region, key, old, live)
        self._tokens += 1
        base: WireItem = dict(old) if update and old is not None else {"pk": {"S": key}}
        if not update and self.rng.random() < 0.3:
            base["tag"] = {"S": f"t{self._tokens}"}  # so that updates have something to keep
        item = {
            **base,
            META.version: {"N": str(version)},
            "data": {"S": f"{region}#{self._tokens}"},
        }
        seq = self.mutate(self.regions[region], key, item, region)
        self._reads[(region, key)] = version  # what a mapper holds after saving
        self._happened(Event(region, key, version, False, user_data(item)))
        verb = "put" if not update else "update" if read is None else f"update if v{read}"
        self._note(f"app {verb} {region} {key} {show(item)} (seq {seq})")

    def delete(self, region: str, key: str, *, ttl: bool = False) -> bool:
        """DeleteItem of a live item, or its expiry by TTL (replicated as a delete)."""
        old = self.regions[region].table.get(key)
        if old is None or is_tombstone(old, META):
            return False
        stored = stored_from_item(old, META)
        if ttl and stored is not None and stored.origin(region) != region:
            return False  # target_item strips _rep_expires: only the origin's copy can expire
        seq = self.mutate(self.regions[region], key, None, region, ttl=ttl)
        self._happened(Event(region, key, version_of(old), True, None))
        self._note(
            f"{'ttl expiry' if ttl else 'app delete'} {region} {key} {show(old)} (seq {seq})"
        )
        return True

    def expire_tombstone(self, region: str, key: str) -> bool:
        """TTL removes an item carrying ``_rep_expires``, once nothing about its key is in flight.

        The TTL exceeds stream retention, so by then every replicator has read past it and no
        lost-lease worker still holds a batch; expiring earlier would model a contract breach.
        TTL knows nothing of versions: a zombie left unhealed expires too.
        """
        old = self.regions[region].table.get(key)
        if old is None or META.expires not in old or self.pending(key):
            return False
        seq = self.mutate(self.regions[region], key, None, region, ttl=True)
        for lane in self.lanes:
            lane.done.clear()
        self._note(f"ttl expiry {region} {key} {show(old)} (seq {seq})")
        return True

    def _next_version(self, region: str, key: str, old: WireItem | None, live: bool) -> int:
        if self.mode is Mode.ONE_WAY:
            # One writer; a re-create restarts at 1 (DynamoDBMapper, enhanced client).
            return version_of(old) + 1 if live and old is not None else 1
        if old is None:
            # Nothing to read (deleted, expired): a timestamp-like version, past every write.
            return self._highest.get(key, 0) + 1
        # Active-active contract: read the local item (a tombstone too) and never go back
        # below what this region itself wrote or deleted, even if an older write shows here.
        return max(version_of(old), self._own_last.get((region, key), 0)) + 1

    def _happened(self, event: Event) -> None:
        self.events.append(event)
        mine = (event.region, event.key)
        self._own_last[mine] = max(self._own_last.get(mine, 0), event.version)
        self._highest[event.key] = max(self._highest.get(event.key, 0), event.version)

    def _note(self, line: str) -> None:
        self.trace.append(f"{self.step:>3} {line}")

    # -- the replicators ----------------------------------------------------------------

    def unread(self, lane: Lane) -> int:
        return len(self.regions[lane.source].stream) - lane.checkpoint

    def advance(self, lane: Lane, size: int, *, how: str = "batch") -> None:
        """Read the next batch from the checkpoint and apply it.

        ``duplicate`` delivers it twice; ``crash`` dies mid-batch (each key's serial run cut
        at a random point) before checkpointing, so the batch is read again later.
        """
        start = lane.checkpoint
        stream = self.regions[lane.source].stream
        end = min(start + size, len(stream))
        # The reader already holds the next page while this one is applied.
        ahead = stream[end : end + size]
        self.deliver(lane, start, end, how=how, crash=how == "crash", ahead=ahead)
        if how == "crash":
            return
        if how == "duplicate":
            self.deliver(lane, start, end, how="again")
        lane.checkpoint = end
        lane.done.append((start, end))

    def replay_late(self, lane: Lane) -> bool:
        """A worker that lost its lease applies a batch it read before newer ones went in."""
        if len(lane.done) < 2:
            return False
        start, end = lane.done.popleft()
        self.deliver(lane, start, end, how="late")
        return True

    def deliver(
        self,
        lane: Lane,
        start: int,
        end: int,
        *,
        how: str,
        crash: bool = False,
        ahead: Sequence[Record] = (),
    ) -> None:
        records = self.regions[lane.source].stream[start:end]
        following = self.rules.batch(ahead, here=lane.source) if ahead else {}
        notes: list[str] = []
        for key, changes in self.rules.batch(records, here=lane.source).items():
            if self.rules.ahead(changes, following.get(key, [])):
                notes.append(f"{changes[0].keys['pk']['S']} left to the page read ahead")
                continue
            cut = self.rng.randint(0, len(changes)) if crash else len(changes)
            notes.extend(self._apply(lane, change) for change in changes[:cut])
        seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
        span = f"seq {seqs[0]}..{seqs[-1]}" if seqs else "nothing"
        self._note(f"{how} {lane} {span}: " + ("; ".join(n for n in notes if n) or "no changes"))

    def _apply(self, lane: Lane, change: Change) -> str:
        incoming = change.incoming
        if lane.source == lane.target and not incoming.tombstone:
            # The local lane writes this region's own tombstones and heals its zombies.
            return self._heal(lane, change) if change.heals_zombie else ""
        carried = self.regions[lane.source].origins[change.sequence_number]
        if lane.source != carried or lane.source != incoming.origin:
            self.echoes_sent += 1  # star topology: a region sends only its own writes
        target = self.regions[lane.target]
        key = change.keys["pk"]["S"]
        before = target.table.get(key)
        stored = stored_from_item(before, META)
        outcome = self.rules.decide(stored, incoming, here=target.name, mode=self.mode)
        flags = ""
        if is_version_regression(stored, incoming, here=target.name, mode=self.mode):
            self.regressions_reported += 1
            flags += " [is_version_regression]"
        # The ground truth: a re-create that loses to a tombstone its origin wrote EARLIER.
        # A redelivered create meets its later tombstone too: at-least-once, not a regression.
        if (
            self.mode is Mode.ACTIVE_ACTIVE
            and incoming.recreate
            and stored is not None
            and stored.tombstone
            and stored.origin(target.name) == incoming.origin
            and incoming.seq > stored.seq
            and outcome is Outcome.SUPERSEDED
        ):
            self.regressions += 1
            flags += " [REGRESSION]"
        if outcome is Outcome.APPLIED:
            item = target_item(change, meta=META, expires_at=self.clock + TOMBSTONE_TTL_SECONDS)
            self.mutate(target, key, item, incoming.origin)
        kind = "tombstone" if incoming.tombstone else "re-create" if incoming.recreate else "write"
        over = show(before) + (f" from {stored.origin(target.name)}" if stored else "")
        head = f"{key} {kind} v{incoming.version} seq {int(incoming.seq)}"
        return f"{head} over {over}: {outcome}{flags}"

    def _heal(self, lane: Lane, change: Change) -> str:
        """DESIGN §4 rule 7: clear a zombie's flags while it is still that zombie."""
        if not self.rules.heal_zombies:
            return ""
        region = self.regions[lane.source]
        key = change.keys["pk"]["S"]
        item = region.table.get(key)
        version = int(change.incoming.version)
        head = f"{key} heal v{version}"
        if item is None or version_of(item) != version or META.deleted not in item:
            return f"{head} over {show(item)}: superseded"
        if is_tombstone(item, META):
            return f"{head} over {show(item)}: superseded"
        healed = {k: v for k, v in item.items() if k not in (META.deleted, META.expires)}
        self.mutate(region, key, healed, region.name)
        return f"{head}: healed"
