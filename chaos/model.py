"""The replication protocol in memory: the world of regions and the application writing to it.

``World`` holds every region (``chaos.regions``), the replicator lanes between them and the
history so far; its application reads, writes, deletes and expires items as a real one does,
and every mutation lands in the region's stream, so replicator writes really echo. The lanes
run in ``chaos.replication`` with the rules of ``chaos.rules``.
One ``random.Random`` drives everything: a seed replays a history exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from chaos.lineage import Lineage
from chaos.regions import (
    META,
    SERVICE_IDENTITY,
    Event,
    Lane,
    Record,
    Region,
    Visible,
    show,
    user_data,
    version_of,
    visible,
)
from chaos.rules import Rules
from replicator.models import Mode, WireItem, is_tombstone, stored_from_item


class World:
    """All regions, their replicators and the history so far."""

    def __init__(
        self,
        rng: random.Random,
        *,
        mode: Mode,
        regions: Iterable[str],
        rules: Rules,
        puts_keep_kv: bool = False,
    ) -> None:
        self.rng = rng
        # Whether an application's whole-item PutItem carries ``_rep_kv`` over (§4b measures
        # the feed both ways); an UpdateItem always keeps it.
        self.puts_keep_kv = puts_keep_kv
        self.lineage = Lineage()
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
            self.note(f"app read {region} {key} {show(item)}")

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
                self.note(f"app update {region} {key} if v{read}: condition failed")
                return
            version = read + 1
            if self.mode is Mode.ACTIVE_ACTIVE and version <= self._own_last.get((region, key), 0):
                return  # the contract: this region never writes below what it wrote before
        else:
            update = update and live
            version = self._next_version(region, key, old, live)
        self._tokens += 1
        base: WireItem = dict(old) if update and old is not None else {"pk": {"S": key}}
        if not update and self.puts_keep_kv and old is not None and META.kv in old:
            base[META.kv] = old[META.kv]
        if not update and self.rng.random() < 0.3:
            base["tag"] = {"S": f"t{self._tokens}"}  # so that updates have something to keep
        item = {
            **base,
            META.version: {"N": str(version)},
            "data": {"S": f"{region}#{self._tokens}"},
        }
        seq = self.mutate(self.regions[region], key, item, region)
        self._reads[(region, key)] = version  # what a mapper holds after saving
        event = Event(region, key, version, False, user_data(item))
        dropped = old is not None and META.kv in old and META.kv not in item
        self._happened(event, seq, over_nothing=old is None, dropped_kv=dropped)
        verb = "put" if not update else "update" if read is None else f"update if v{read}"
        self.note(f"app {verb} {region} {key} {show(item)} (seq {seq})")

    def delete(self, region: str, key: str, *, ttl: bool = False) -> bool:
        """DeleteItem of a live item, or its expiry by TTL (replicated as a delete)."""
        old = self.regions[region].table.get(key)
        if old is None or is_tombstone(old, META):
            return False
        stored = stored_from_item(old, META)
        if ttl and stored is not None and stored.origin(region) != region:
            return False  # target_item strips _rep_expires: only the origin's copy can expire
        seq = self.mutate(self.regions[region], key, None, region, ttl=ttl)
        self._happened(Event(region, key, version_of(old), True, None), seq)
        self.note(f"{'ttl expiry' if ttl else 'app delete'} {region} {key} {show(old)} (seq {seq})")
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
        self.lineage.expired(region, key, seq)
        for lane in self.lanes:
            lane.done.clear()
        self.note(f"ttl expiry {region} {key} {show(old)} (seq {seq})")
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

    def _happened(
        self, event: Event, seq: str, *, over_nothing: bool = False, dropped_kv: bool = False
    ) -> None:
        write = len(self.events)
        self.lineage.wrote(
            event.region, event.key, seq, write, over_nothing=over_nothing, dropped_kv=dropped_kv
        )
        self.events.append(event)
        mine = (event.region, event.key)
        self._own_last[mine] = max(self._own_last.get(mine, 0), event.version)
        self._highest[event.key] = max(self._highest.get(event.key, 0), event.version)

    def note(self, line: str) -> None:
        self.trace.append(f"{self.step:>3} {line}")
