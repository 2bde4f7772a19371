"""``replicator verify``: compare what readers see in every table of a pair (DESIGN §5b).

Visible state: a tombstone equals absence, the heartbeat item is ignored and
metadata attributes are not user data (``rule.visible``). A target is compared with what
it should hold of the source (``Selection.replica_of``: the pair's filter applied, its
excluded attributes left out), and expired items count as absent with ttl_deletes: skip.
Tables are compared in bounded memory: a parallel scan of each folds every key into per
key-hash bucket digests (``buckets``); only the buckets that differ are scanned again, key
by key.
A difference may be replication in flight, so differing keys are re-read
(strongly consistent) a few times and only what persists is reported.

One-way mode compares each target with the source. Active-active mode has no
single source of truth: every region of the pair is read, the per-key winner is
the state with the greatest §3 order key, and the regions that do not show it are
reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from replicator.apply.rule import order_key, visible
from replicator.apply.selection import EVERYTHING, Selection
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import describe, key_schema_of
from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError
from replicator.models import ItemKey, Meta, Mode, WireItem, stored_from_item
from replicator.service.wiring import meta_for, selection_for
from replicator.telemetry.heartbeat import is_heartbeat_value
from replicator.tools.buckets import TableDigest, bucket_of, differing_buckets, passes, state_digest
from replicator.tools.kinds import kind_of, winner_kind
from replicator.tools.scan import get_item, key_of, scan_segment
from replicator.tools.select import select_pairs

SCAN_SEGMENTS = 4  # per table; every table of a pair is scanned at once
RECHECK_ROUNDS = 5
RECHECK_DELAY_SECONDS = 0.5
REREAD_CONCURRENCY = 16

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class View:
    """One table of a pair, in its region."""

    region: str
    table: str
    client: DynamoDB

    def __str__(self) -> str:
        return f"{self.region}/{self.table}"


@dataclass(frozen=True, slots=True)
class Difference:
    source_table: str
    target: str  # region/table that does not show the expected state
    key: ItemKey
    kind: str  # missing | extra | stale | resurrected | version regression
    # region/table holding the expected state: the source, or in active-active mode
    # the region holding the key's winner.
    holder: str = ""
    # The raw items as last read: what repair writes from, and the state it must still find.
    source_item: WireItem | None = field(default=None, compare=False, repr=False)
    target_item: WireItem | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        key = ", ".join(f"{name}={value}" for name, _, value in self.key)
        return f"{self.kind:18} {self.holder or self.source_table} -> {self.target}  {key}"

    def as_json(self) -> dict[str, Any]:
        return {
            "source_table": self.source_table,
            "target": self.target,
            "expected_from": self.holder,
            "key": {name: value for name, _, value in self.key},
            "kind": self.kind,
        }


@dataclass
class Report:
    compared: int = 0  # visible keys, in the fullest table of each pair
    differences: list[Difference] = field(default_factory=list)
    differing_buckets: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "differing_buckets": self.differing_buckets,
            "differences": [d.as_json() for d in self.differences],
        }


def is_heartbeat(key: ItemKey, heartbeat_prefix: str) -> bool:
    return any(is_heartbeat_value(type_, value, heartbeat_prefix) for _, type_, value in key)


def expected_index(items: Sequence[WireItem | None], views: Sequence[View], meta: Meta) -> int:
    """Index of the view holding the state every table should show: the §3 winner."""
    best, best_key = 0, None
    for index, item in enumerate(items):
        stored = stored_from_item(item, meta)
        if stored is None:
            continue
        key = order_key(stored, here=views[index].region)
        if best_key is None or key > best_key:
            best, best_key = index, key
    return best


@dataclass
class _PairCheck:
    """Verify of one pair: the views, and how the expected state of a key is chosen."""

    source_table: str
    views: list[View]
    key_names: list[str]
    meta: Meta
    mode: Mode
    heartbeat_prefix: str
    recheck_delay: float
    on_progress: Progress
    selection: Selection = EVERYTHING
    clock: Callable[[], float] = time.time

    async def run(self) -> Report:
        self.on_progress(f"digesting {', '.join(map(str, self.views))}")
        digests = await asyncio.gather(*(self._digest(i) for i in range(len(self.views))))
        report = Report(compared=max(d.keys for d in digests))
        differing = differing_buckets(digests)
        report.differing_buckets = len(differing)
        for group in passes(differing, digests):
            self.on_progress(f"comparing {len(group)} differing bucket(s) key by key")
            suspects = await self._suspects(group)
            report.differences.extend(await self._persisting(suspects))
        report.differences.sort(key=lambda d: (d.key, d.target))
        return report

    async def _digest(self, index: int) -> TableDigest:
        digest = TableDigest()

        def fold(key: ItemKey, item: WireItem) -> None:
            digest.add(key, visible(self._shown(index, item), self.meta))

        await self._scan(self.views[index], fold)
        return digest

    def _shown(self, index: int, item: WireItem | None) -> WireItem | None:
        """What is compared of view ``index``'s ``item``: one-way, the source as its
        targets should hold it (filtered, excluded attributes left out); every table
        without excluded attributes, and expired items as absent with ttl_deletes: skip."""
        if index == 0 and self.mode is Mode.ONE_WAY:
            return self.selection.replica_of(item, now=self.clock())
        return self.selection.as_seen(item, now=self.clock())

    async def _scan(self, view: View, consume: Callable[[ItemKey, WireItem], None]) -> None:
        async def segment(number: int) -> None:
            pages = scan_segment(view.client, view.table, number, SCAN_SEGMENTS, consistent=True)
            async for page in pages:
                for item in page.items:
                    key = key_of(item, self.key_names)
                    if not is_heartbeat(key, self.heartbeat_prefix):
                        consume(key, item)

        async with asyncio.TaskGroup() as group:
            for number in range(SCAN_SEGMENTS):
                group.create_task(segment(number))

    async def _suspects(self, buckets: frozenset[int]) -> list[ItemKey]:
        """Keys of ``buckets`` whose visible state is not the same in every view."""
        states: dict[ItemKey, list[int]] = {}

        def noter(index: int) -> Callable[[ItemKey, WireItem], None]:
            def note(key: ItemKey, item: WireItem) -> None:
                if bucket_of(key) in buckets:
                    seen = visible(self._shown(index, item), self.meta)
                    if seen is not None:
                        row = states.setdefault(key, [0] * len(self.views))
                        row[index] = state_digest(key, seen)

            return note

        await asyncio.gather(*(self._scan(v, noter(i)) for i, v in enumerate(self.views)))
        return sorted(key for key, row in states.items() if len(set(row)) > 1)

    async def _persisting(self, suspects: list[ItemKey]) -> list[Difference]:
        found: list[Difference] = []
        for round_ in range(RECHECK_ROUNDS):
            if not suspects:
                break
            if round_:
                await asyncio.sleep(self.recheck_delay)
            self.on_progress(f"re-reading {len(suspects)} differing key(s), round {round_ + 1}")
            found = await self._reread(suspects)
            suspects = sorted({d.key for d in found})
        return found

    async def _reread(self, keys: list[ItemKey]) -> list[Difference]:
        found: list[Difference] = []
        pending: Iterator[ItemKey] = iter(keys)

        async def worker() -> None:
            for key in pending:
                items = [
                    self._shown(i, await get_item(v.client, v.table, key))
                    for i, v in enumerate(self.views)
                ]
                found.extend(self.differences(key, items))

        async with asyncio.TaskGroup() as group:
            for _ in range(min(REREAD_CONCURRENCY, len(keys))):
                group.create_task(worker())
        return found

    def differences(self, key: ItemKey, items: list[WireItem | None]) -> list[Difference]:
        """How each view differs from the expected state of ``key``."""
        expected = 0 if self.mode is Mode.ONE_WAY else expected_index(items, self.views, self.meta)
        result = []
        for index, item in enumerate(items):
            kind = None if index == expected else kind_of(items[expected], item, self.meta)
            if kind == "resurrected" and self.mode is Mode.ACTIVE_ACTIVE:
                regions = (self.views[expected].region, self.views[index].region)
                kind = winner_kind(items[expected], item, regions, self.meta)
            if kind is not None:
                result.append(
                    Difference(
                        self.source_table,
                        str(self.views[index]),
                        key,
                        kind,
                        holder=str(self.views[expected]),
                        source_item=items[expected],
                        target_item=item,
                    )
                )
        return result


async def verify_pair(
    config: Config,
    pair: Pair,
    clients: Clients,
    *,
    recheck_delay: float = RECHECK_DELAY_SECONDS,
    on_progress: Progress = lambda _: None,
) -> Report:
    source_client = await clients.json("dynamodb", config.source_region)
    description = await describe(source_client, pair.source_table)
    if description is None:
        raise ConfigError(
            f"source table {pair.source_table} does not exist in {config.source_region}"
        )
    views = [View(config.source_region, pair.source_table, source_client)]
    for target in pair.targets:
        views.append(
            View(target.region, target.table, await clients.json("dynamodb", target.region))
        )
    check = _PairCheck(
        source_table=pair.source_table,
        views=views,
        key_names=[name for name, _, _ in key_schema_of(description)],
        meta=meta_for(config, pair),
        mode=config.mode,
        heartbeat_prefix=config.heartbeat.key_prefix,
        recheck_delay=recheck_delay,
        on_progress=on_progress,
        selection=selection_for(config, pair),
    )
    return await check.run()


async def verify(
    config: Config,
    *,
    pair: str | None = None,
    recheck_delay: float = RECHECK_DELAY_SECONDS,
    on_progress: Progress = lambda _: None,
) -> Report:
    """Compare every pair (or the one named); the report lists differences that persisted."""
    chosen = select_pairs(config, pair)
    clients = Clients.for_config(config)
    try:
        total = Report()
        for each in chosen:
            report = await verify_pair(
                config, each, clients, recheck_delay=recheck_delay, on_progress=on_progress
            )
            total.compared += report.compared
            total.differing_buckets += report.differing_buckets
            total.differences.extend(report.differences)
        return total
    finally:
        await clients.aclose()
