"""``replicator backfill``: copy what a table held before its stream, safely while replicating.

A parallel scan of the source, page by page; every item goes to every target
through the same ``TargetApplier`` and conditional rule as the stream, never with
the re-create exception (``deliver.state_change``), so a newer stream write always
beats an older scan read. A one-way Kinesis pair's targets are written by rule K,
where the version plays no part: there a scanned item is stamped ``_rep_ts = 0``
(``deliver.before_every_record``, DESIGN §4c), so it fills only keys no record has
written, and every record supersedes it. Writes are bounded by the pair's concurrency and the
given rate. Each segment's position is saved in the control table after its page
is settled, so a run killed even with -9 resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from replicator.apply.applier import TargetApplier
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import CONTROL_KEY, describe, ensure_table, key_schema_of
from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError, RecordError
from replicator.models import Change, ItemKey, Outcome, TargetRef, WireItem
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.service.wiring import meta_for, selection_for
from replicator.telemetry.metrics import Metrics
from replicator.tools.deliver import (
    before_every_record,
    by_rule_k,
    state_change,
    target_applier,
)
from replicator.tools.progress import ProgressStore, SegmentProgress, resumable
from replicator.tools.scan import key_of, scan_segment
from replicator.tools.select import select_pairs
from replicator.tools.verify import is_heartbeat

DEFAULT_SEGMENTS = 8
PAGE_ITEMS = 100  # progress is saved per page: a resumed run repeats at most this per segment

# The outcome counts of the segment a task works for: the applier's workers are
# created inside the segment's task, so they see its counter.
_TALLY: contextvars.ContextVar[Counter[str]] = contextvars.ContextVar("backfill_tally")
FILTERED = "filtered"  # tallied with the outcomes, so a resumed run keeps the count


class BackfillView(Protocol):
    """Where progress goes (the CLI draws a progress bar)."""

    def started(self, source_table: str, *, total: int | None, done: int) -> None: ...
    def advance(self, items: int) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class BackfillSummary:
    scanned: int = 0
    resumed: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)  # per target write
    filtered: int = 0  # not matching the pair's filter: no target holds them

    def line(self) -> str:
        counts = self.outcomes
        return (
            f"backfill: {self.scanned} scanned, {counts[Outcome.APPLIED]} written, "
            f"{counts[Outcome.SUPERSEDED] + counts[Outcome.DUPLICATE]} superseded "
            f"({counts[Outcome.DUPLICATE]} already identical), "
            f"{counts[Outcome.DEAD_LETTERED]} dead-lettered"
            + (f", {self.filtered} left out by the pair's filter" if self.filtered else "")
        )


class _SegmentMetrics(Metrics):
    def outcome(
        self, source_table: str, target: TargetRef, outcome: Outcome, *, lag: float | None = None
    ) -> None:
        super().outcome(source_table, target, outcome)  # a scan read has no stream lag
        _TALLY.get()[outcome.value] += 1


async def backfill(
    config: Config,
    view: BackfillView,
    *,
    pair: str | None = None,
    segments: int = DEFAULT_SEGMENTS,
    rate: float | None = None,
    restart: bool = False,
    page_items: int = PAGE_ITEMS,
) -> BackfillSummary:
    """Backfill every pair (or the one named) to its targets; return the totals."""
    clients = Clients.for_config(config)
    stop = asyncio.Event()
    metrics = _SegmentMetrics(source_region=config.source_region, mode=config.mode.value)
    try:
        total = BackfillSummary()
        for each in select_pairs(config, pair):
            run = _PairBackfill(config, each, clients, view, metrics, page_items=page_items)
            summary = await run.run(segments=segments, rate=rate, restart=restart, stop=stop)
            total.scanned += summary.scanned
            total.filtered += summary.filtered
            total.resumed |= summary.resumed
            total.outcomes.update(summary.outcomes)
        return total
    finally:
        stop.set()
        metrics.shutdown()
        await clients.aclose()


@dataclass
class _PairBackfill:
    config: Config
    pair: Pair
    clients: Clients
    view: BackfillView
    metrics: Metrics
    page_items: int

    async def run(
        self, *, segments: int, rate: float | None, restart: bool, stop: asyncio.Event
    ) -> BackfillSummary:
        config, table = self.config, self.pair.source_table
        home = await self.clients.json("dynamodb", config.source_region)
        description = await describe(home, table)
        if description is None:
            raise ConfigError(f"source table {table} does not exist in {config.source_region}")
        await ensure_table(home, config.control_table, CONTROL_KEY)
        await ensure_table(home, config.dlq_table, CONTROL_KEY)
        store = ProgressStore(home, config.control_table)
        progress = [] if restart else resumable(await store.load(table))
        resumed = bool(progress)
        if resumed:
            began = sum(p.started for p in progress)
            self.view.note(
                f"resumed the backfill of {table}: {began} of {len(progress)} segments had "
                f"progress, {sum(p.scanned for p in progress)} items scanned before"
            )
        else:
            run = f"{time.time():.6f}"
            progress = [SegmentProgress(n, segments, run) for n in range(segments)]
        dlq = DeadLetterQueue(home, config.dlq_table)
        appliers = [
            await target_applier(
                config,
                self.pair,
                TargetRef(t.region, t.table),
                self.clients,
                dlq=dlq,
                metrics=self.metrics,
                stop=stop,
                max_writes_per_second=rate,
            )
            for t in self.pair.targets
        ]
        key_names = [name for name, _, _ in key_schema_of(description)]
        count = description.get("ItemCount")
        self.view.started(
            table, total=int(count) if count else None, done=sum(p.scanned for p in progress)
        )
        async with asyncio.TaskGroup() as group:
            for each in progress:
                if not each.done:
                    group.create_task(self._segment(home, each, store, appliers, key_names))
        outcomes: Counter[str] = Counter()
        for each in progress:
            outcomes.update(each.outcomes)
        filtered = outcomes.pop(FILTERED, 0)
        return BackfillSummary(sum(p.scanned for p in progress), resumed, outcomes, filtered)

    async def _segment(
        self,
        client: DynamoDB,
        progress: SegmentProgress,
        store: ProgressStore,
        appliers: list[TargetApplier],
        key_names: list[str],
    ) -> None:
        _TALLY.set(progress.outcomes)
        table = self.pair.source_table
        pages = scan_segment(
            client,
            table,
            progress.segment,
            progress.total_segments,
            start=progress.next_start,
            page_items=self.page_items,
        )
        async for page in pages:
            per_key, dead = self._changes(page.items, key_names)
            async with asyncio.TaskGroup() as group:
                for applier in appliers:
                    group.create_task(applier.apply(table, per_key, dead))
            progress.scanned += len(page.items)
            progress.next_start = page.next_start
            progress.done = page.next_start is None
            await store.save(table, progress)
            self.view.advance(len(page.items))

    def _changes(
        self, items: list[WireItem], key_names: list[str]
    ) -> tuple[dict[ItemKey, list[Change]], list[tuple[dict[str, Any], str]]]:
        meta = meta_for(self.config, self.pair)
        selection = selection_for(self.config, self.pair)
        rule_k = by_rule_k(self.config, self.pair)
        per_key: dict[ItemKey, list[Change]] = {}
        dead: list[tuple[dict[str, Any], str]] = []
        for item in items:
            key = key_of(item, key_names)
            if is_heartbeat(key, self.config.heartbeat.key_prefix):
                continue  # the stream replicates the canary; it is not user data
            if not selection.keeps(item):
                # No target copy to remove in the common case; one left from a wider
                # filter is what verify reports (extra) and --repair deletes.
                _TALLY.get()[FILTERED] += 1
                continue
            keys = {name: item[name] for name in key_names}
            # Shaped like a stream record, so the DLQ (and ``dlq replay``) read it alike.
            record = {"eventName": "BACKFILL", "dynamodb": {"Keys": keys, "NewImage": item}}
            try:
                change = state_change(
                    keys, item, meta=meta, here=self.config.source_region, record=record
                )
            except RecordError as exc:
                dead.append((record, exc.reason))
                continue
            per_key[key] = [before_every_record(change) if rule_k else change]
        return per_key, dead
