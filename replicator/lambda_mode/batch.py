"""One Lambda invocation's batch: what is settled on every target, and when to stop.

The event source mapping checkpoints everything before the sequence number the
handler reports, so the handler must know, per record, whether every target has it
(applied, superseded, duplicate or dead-lettered). The applier does not say; the
writer and DLQ it is given here note each settled write. Per key, writes go out one
at a time in stream order (and a coalesced write stands for its whole run), so a
settled write settles every record of its key up to its sequence number. Kinesis
records (DESIGN §4c) are coalesced by ts, not by place: a settled write settles its own
record, its redeliveries, and its key's records of an older ts, which it stands for.

An invocation stops starting writes (and dead letters) once ``stop`` is set: when
the remaining time falls below the margin, or when a write kept failing for a
retryable reason. The rest is reported and the mapping delivers it again.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from replicator.apply.applier import ChangeWriter, DeadLetterSink
from replicator.errors import AwsError, ShutdownInterrupted
from replicator.lambda_mode.metrics import EmfMetrics
from replicator.models import Change, ItemKey, Outcome, TargetRef, item_key, pad_seq
from replicator.pipeline.batches import Dead
from replicator.stream.records import sequence_of

# Attempts of one write within an invocation. Past them the record is reported: a
# retry by the mapping costs nothing while it waits, an invocation waiting is billed.
WRITE_ATTEMPTS = 3


class Invocation:
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self._settled: dict[TargetRef, dict[ItemKey, str]] = collections.defaultdict(dict)
        self._dead_lettered: dict[TargetRef, set[str]] = collections.defaultdict(set)
        # Kinesis changes: per key, the newest ts settled and the eventIDs settled at it.
        self._newest: dict[TargetRef, dict[ItemKey, tuple[int, set[str]]]] = (
            collections.defaultdict(dict)
        )

    def wrote(self, target: TargetRef, change: Change) -> None:
        """``change`` is settled on ``target`` (applied, superseded or duplicate)."""
        ts = change.incoming.ts
        if ts is None:
            self.settled(target, change.key, change.incoming.seq)
            return
        newest = self._newest[target]
        at, events = newest.get(change.key, (ts, set()))
        if ts > at:
            at, events = ts, set()
        if ts == at:
            events.add(change.incoming.event_id)
        newest[change.key] = (at, events)

    def settled(self, target: TargetRef, key: ItemKey, seq: str) -> None:
        """Every record of ``key`` up to ``seq`` (padded) is settled on ``target``."""
        upto = self._settled[target]
        upto[key] = max(upto.get(key, ""), seq)

    def dead_lettered(self, target: TargetRef, record: dict[str, Any]) -> None:
        seq = pad_seq(sequence_of(record))
        self._dead_lettered[target].add(seq)
        body = record.get("dynamodb")
        if isinstance(body, dict) and isinstance(body.get("Keys"), dict):
            self.settled(target, item_key(body["Keys"]), seq)

    def first_unsettled(self, work: dict[TargetRef, tuple[list[Change], Dead]]) -> str | None:
        """The SequenceNumber of the first record some target does not have yet."""
        first: tuple[str, str] | None = None
        for target, (changes, dead) in work.items():
            gone = self._dead_lettered[target]
            missing = [(c.position, c.sequence_number) for c in changes if not self._has(target, c)]
            missing += [
                (pad_seq(seq), seq) for r, _ in dead if pad_seq(seq := sequence_of(r)) not in gone
            ]
            if missing:
                first = min([*missing, *([first] if first else [])])
        return first[1] if first else None

    def _has(self, target: TargetRef, change: Change) -> bool:
        ts = change.incoming.ts
        if ts is None:
            return self._settled[target].get(change.key, "") >= change.position
        at, events = self._newest[target].get(change.key, (-1, set()))
        return (
            ts < at
            or (ts == at and change.incoming.event_id in events)
            or change.position in self._dead_lettered[target]
        )


class InvocationWriter:
    """A target's writer within one invocation: notes settled writes, gives up in time."""

    def __init__(
        self,
        writer: ChangeWriter,
        invocation: Invocation,
        *,
        source_table: str,
        target: TargetRef,
        metrics: EmfMetrics,
    ) -> None:
        self._writer = writer
        self._invocation = invocation
        self._source_table = source_table
        self._target = target
        self._metrics = metrics
        self._attempts: collections.Counter[str] = collections.Counter()

    async def put(self, change: Change, *, now: float) -> Outcome:
        _refuse_after_stop(self._invocation)
        try:
            outcome = await self._writer.put(change, now=now)
        except AwsError as exc:
            if exc.retryable and not exc.record_fault:
                self._attempts[change.sequence_number] += 1
                if self._attempts[change.sequence_number] >= WRITE_ATTEMPTS:
                    self._invocation.stop.set()
                    raise ShutdownInterrupted(
                        f"write to {self._target} failed {WRITE_ATTEMPTS} times ({exc}); "
                        "the record is reported for the mapping to retry"
                    ) from exc
                self._metrics.write_retried(self._source_table, self._target)
            raise
        self._invocation.wrote(self._target, change)
        return outcome


class InvocationDeadLetters:
    """The DLQ within one invocation: notes what was dead-lettered, per target."""

    def __init__(self, dlq: DeadLetterSink, invocation: Invocation) -> None:
        self._dlq = dlq
        self._invocation = invocation

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        _refuse_after_stop(self._invocation)
        # The DLQ's retry policy waits a failing put out for as long as it lasts; within an
        # invocation that is only until ``stop``: the record is reported and comes back.
        put = asyncio.ensure_future(
            self._dlq.put(
                source_table=source_table,
                target=target,
                record=record,
                reason=reason,
                recreate=recreate,
            )
        )
        stopped = asyncio.ensure_future(self._invocation.stop.wait())
        try:
            await asyncio.wait((put, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not put.done():
                put.cancel()
                await asyncio.wait((put,))  # wait, not await: its cancellation is ours
        if put.cancelled():
            raise ShutdownInterrupted("a dead letter was still failing when the invocation stopped")
        put.result()  # its error, if it failed for good
        self._invocation.dead_lettered(target, record)


def _refuse_after_stop(invocation: Invocation) -> None:
    if invocation.stop.is_set():
        raise ShutdownInterrupted("the invocation stopped starting writes; the rest is reported")
