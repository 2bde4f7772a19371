"""Ground truth for lost writes (DESIGN §4b), and the entries the model's feed collected.

Every application write (a delete too) gets an id, its index in ``World.events``, and a
**parent**: the write whose state it overwrote in its region (the item an optimistic
UpdateItem read and updated, the state stored when a whole-item PutItem landed; None when
the key had never been written there). Replicated copies create no write: a region's state
is the id of the write it holds, even after TTL has removed a tombstone. A write is **lost**
when it is not an ancestor of the state every region converged to; a **fork** is a maximal
chain of lost writes (a tree of them rooted at a lost write whose parent is not lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from chaos.regions import Event
from replicator.apply.conflict import Loss, Side

Slot = tuple[str, str]  # (region, key)
EntryKey = tuple[str, str]  # pipeline.conflicts.entry_key: (pk, sk)


@dataclass
class Entry:
    """One feed entry as the detecting region's conflicts table keeps it: the first winner."""

    region: str
    key: str
    loss: Loss
    # The writes the rule judged, as the model knows them (None: a record that carried
    # none); two writes may share the entry's (origin, version, tombstone).
    loser: int | None = None
    winner: int | None = None


@dataclass
class Lineage:
    """Parents of the application's writes, each region's state, and the feed's entries."""

    parent: dict[int, int | None] = field(default_factory=dict)
    state: dict[Slot, int] = field(default_factory=dict)
    # The write each stream record carries, by (region, SequenceNumber).
    carried: dict[Slot, int | None] = field(default_factory=dict)
    # (detecting region, entry key) -> entry; attribute_not_exists keeps the first.
    entries: dict[tuple[str, EntryKey], Entry] = field(default_factory=dict)
    duplicates: int = 0  # entries collapsed onto one already written in that region
    # Writes whose record's OldImage could not show their parent: no kv carried it over.
    blind: set[int] = field(default_factory=set)
    # ... of which the item was gone because TTL had removed it (a tombstone expired), not
    # because an application deleted it and the local tombstone was not written yet.
    after_expiry: set[int] = field(default_factory=set)
    # Slots whose item TTL removed, while nothing has been written there since.
    expired_slots: set[Slot] = field(default_factory=set)
    # Whole-item PutItems that did not carry the ``_rep_kv`` of the item they replaced:
    # their NewImage, the next record's OldImage, forgets the history before them.
    dropped_kv: set[int] = field(default_factory=set)

    def wrote(
        self,
        region: str,
        key: str,
        seq: str,
        write: int,
        *,
        over_nothing: bool = False,
        dropped_kv: bool = False,
    ) -> None:
        """The application's write ``write`` landed in ``region`` as record ``seq``,
        ``over_nothing`` when the table held no item (a tombstone expired, or not written
        yet), ``dropped_kv`` when it was a whole-item PutItem over an item with ``_rep_kv``."""
        parent = self.parent[write] = self.state.get((region, key))
        if dropped_kv:
            self.dropped_kv.add(write)
        if over_nothing and parent is not None:
            self.blind.add(write)
            if (region, key) in self.expired_slots:
                self.after_expiry.add(write)
        self.expired_slots.discard((region, key))
        self.state[(region, key)] = write
        self.carried[(region, seq)] = write

    def replicated(self, source: str, record: str, target: str, key: str, seq: str) -> None:
        """A replicator applied ``source``'s record ``record`` into ``target`` as ``seq``."""
        write = self.carried.get((source, record))
        if write is not None:
            self.state[(target, key)] = write
        self.expired_slots.discard((target, key))
        self.carried[(target, seq)] = write

    def kept(self, region: str, key: str, seq: str) -> None:
        """A mutation that is no new write (zombie heal, tombstone expiry) as record ``seq``."""
        self.carried[(region, seq)] = self.state.get((region, key))

    def expired(self, region: str, key: str, seq: str) -> None:
        """TTL removed ``region``'s tombstone of ``key`` as record ``seq``: the state stays
        the delete (a later write there descends from it), but no item shows it any more."""
        self.kept(region, key, seq)
        self.expired_slots.add((region, key))

    def report(self, slot: tuple[str, EntryKey], entry: Entry) -> None:
        """``entry`` goes to region ``slot[0]``'s table under key ``slot[1]``."""
        if slot in self.entries:
            self.duplicates += 1
        else:
            self.entries[slot] = entry

    def converged(self, key: str, regions: Sequence[str]) -> int | None:
        """The write every region holds for ``key``; None if they hold different ones."""
        held = {self.state.get((region, key)) for region in regions}
        return held.pop() if len(held) == 1 else None

    def path_down(self, write: int, ancestors: set[int]) -> set[int] | None:
        """The writes from ``write`` down to the first of ``ancestors`` (excluded), None
        if it descends from none of them."""
        path: set[int] = set()
        for each in self.line(write):
            if each in ancestors:
                return path
            path.add(each)
        return None

    def line(self, write: int | None) -> list[int]:
        """``write`` and its ancestors, newest first."""
        line: list[int] = []
        while write is not None and write not in line:
            line.append(write)
            write = self.parent.get(write)
        return line


def forks(lost: set[int], lineage: Lineage) -> list[set[int]]:
    """Group lost writes into forks: each lost write joins the fork of its lost parent."""
    root: dict[int, int] = {}

    def find(write: int) -> int:
        parent = lineage.parent.get(write)
        if write not in root:
            root[write] = find(parent) if parent is not None and parent in lost else write
        return root[write]

    grouped: dict[int, set[int]] = {}
    for write in sorted(lost):
        grouped.setdefault(find(write), set()).add(write)
    return list(grouped.values())


def rescued(write: int, line: Sequence[int], events: Sequence[Event]) -> bool:
    """Whether ``write``, on the converged ``line``, lives on through a later write of
    another region: a loss when it was judged, undone later (DESIGN §4b's "rescued")."""
    if write not in line:
        return False
    later = line[: line.index(write)]
    return any(events[other].region != events[write].region for other in later)


def named(key: str, side: Side, events: Sequence[Event]) -> list[int]:
    """The writes one side of an entry may be: same key, region, version and tombstone."""
    return [
        index
        for index, event in enumerate(events)
        if event.key == key
        and event.region == side.origin
        and event.version == side.version
        and event.tombstone == side.tombstone
    ]


def judged(write: int | None, key: str, side: Side, events: Sequence[Event]) -> list[int]:
    """The write the rule judged as one side of an entry, or failing that every write the
    side may be. A region can write two of the same version and kind (a delete of its own
    write, then of another region's that landed in its REMOVE gap)."""
    return [write] if write is not None else named(key, side, events)
