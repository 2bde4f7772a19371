"""Lambda mode's execution environment: ``LambdaFunction`` applies each invocation's batch.

The mapping (with ``FunctionResponseTypes: [ReportBatchItemFailures]``) owns shards,
checkpoints, retries and bisecting (DESIGN §6); the handler applies one batch with
the container pipeline's own code: ``batches.decode`` (filter), ``batches.for_target``,
``records.coalesce`` and a ``TargetApplier`` per target, so per-key order, bounded
concurrency and the conflict rule are the same.

- Records every target has (applied, superseded, duplicate, or dead-lettered by the
  handler itself with the reason) are done; the response names the first record that
  is not: ``{"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}]}``, and the
  mapping delivers it and everything after it again (duplicates by the rule).
- A write failing for a retryable reason gets a few attempts, then is reported; once
  ``context.get_remaining_time_in_millis()`` is below the margin no write starts, and
  at half the margin a write still unanswered is cancelled and reported.
- An EventBridge schedule's tick writes the heartbeat into each source table; a source
  that does not answer before the margin misses that tick (logged), it is not waited for.
- Metrics are CloudWatch EMF lines on stdout (``lambda_metrics``).

Clients, config and an event loop live as long as the execution environment; the entry
point that keeps one warm per config is ``lambda_mode.handler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from replicator.apply.applier import ChangeWriter, DeadLetterSink
from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import Config, Pair
from replicator.errors import AwsError, ConfigError, ShutdownInterrupted
from replicator.lambda_mode.batch import Invocation, InvocationDeadLetters, InvocationWriter
from replicator.lambda_mode.event import StreamBatch, is_scheduled, stream_batch
from replicator.lambda_mode.metrics import EmfMetrics
from replicator.models import Change, Meta, TargetRef
from replicator.pipeline.batches import Dead, decode, for_target
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.service.startup import heartbeat_writers, targets_of
from replicator.service.wiring import (
    applier_for,
    conflict_feed,
    meta_for,
    selection_for,
    target_writer,
)
from replicator.stream.records import coalesce, sequence_of
from replicator.telemetry.heartbeat import HeartbeatWriter

log = logging.getLogger(__name__)

# Time kept back from the function's timeout: a write started later may not finish,
# and a timed-out invocation makes the mapping retry the whole batch.
DEFAULT_MARGIN_MS = 1000

WriterSeam = Callable[[TargetRef, ChangeWriter], ChangeWriter]
"""Wraps each target's writer (fault injection in tests)."""


class Context(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Source:
    """A configured source table, ready to apply batches to its targets."""

    pair: Pair
    meta: Meta
    writers: dict[TargetRef, ChangeWriter]
    local: TargetRef | None
    dlq: DeadLetterSink


class LambdaFunction:
    """One execution environment: what survives between invocations (warm starts)."""

    def __init__(
        self,
        config: Config,
        *,
        margin_ms: int = DEFAULT_MARGIN_MS,
        writer_seam: WriterSeam | None = None,
    ) -> None:
        self.config = config
        self.metrics = EmfMetrics(source_region=config.source_region, mode=config.mode.value)
        self._margin_ms = margin_ms
        self._seam = writer_seam
        # The handler is synchronous; one loop serves every invocation, so the clients
        # (bound to the loop that created them) are reused while the environment is warm.
        self._loop = asyncio.new_event_loop()
        self._clients = Clients.for_config(config)
        self._sources: dict[str, _Source] | None = None
        self._beats: list[HeartbeatWriter] | None = None
        self._tick = asyncio.Event()  # set when a heartbeat tick's time is up

    def __call__(self, event: dict[str, Any], context: Context) -> dict[str, Any]:
        try:
            return self._loop.run_until_complete(self._handle(event, context))
        finally:
            self.metrics.flush()

    def close(self) -> None:
        """Close the clients and the loop (idempotent); Lambda itself just ends the process."""
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(self._clients.aclose())
        self._loop.close()
        self.metrics.shutdown()

    async def _handle(self, event: dict[str, Any], context: Context) -> dict[str, Any]:
        if is_scheduled(event):
            return {"heartbeats": await self._heartbeat(context)}
        failed = await self._apply(stream_batch(event), context)
        return {"batchItemFailures": [] if failed is None else [{"itemIdentifier": failed}]}

    @contextlib.asynccontextmanager
    async def _until_margin(
        self, context: Context, stop: asyncio.Event, unfinished: str
    ) -> AsyncIterator[None]:
        """Set ``stop`` once the time left falls to the margin; cancel the block at half of it.

        ``stop`` ends retries and keeps new writes from starting. A write still out at
        half the margin (a blackholed region answers nothing for an attempt's 10 s) is
        cancelled, so the invocation answers before its timeout; it is reported as
        ``unfinished`` says, and the conditional write makes doing it again harmless.
        """
        remaining = context.get_remaining_time_in_millis() / 1000
        margin = self._margin_ms / 1000
        if remaining <= margin:
            stop.set()
        timer = asyncio.get_running_loop().call_later(max(0.0, remaining - margin), stop.set)
        try:
            async with asyncio.timeout(max(0.0, remaining - margin / 2)):
                yield
        except TimeoutError:
            log.warning("calls still out at the function's deadline were cancelled; %s", unfinished)
        finally:
            timer.cancel()

    async def _heartbeat(self, context: Context) -> int:
        """Heartbeats written; a source that does not answer in time misses this tick."""
        written = 0

        async def write(beat: HeartbeatWriter) -> None:
            nonlocal written
            try:
                await beat.beat()
            except ShutdownInterrupted as exc:
                log.warning("heartbeat missed this tick: %s", exc)
                return
            written += 1

        # The writers (and their retry policy) outlive the tick; their stop is re-armed.
        self._tick.clear()
        async with self._until_margin(context, self._tick, "the heartbeat misses this tick"):
            if self._beats is None:
                try:
                    self._beats = await heartbeat_writers(
                        self.config, self._clients, stop=self._tick
                    )
                except ShutdownInterrupted as exc:
                    log.warning("no heartbeat this tick: %s", exc)
                    return 0
            async with asyncio.TaskGroup() as group:
                for beat in self._beats:
                    group.create_task(write(beat))
        return written

    async def _apply(self, batch: StreamBatch, context: Context) -> str | None:
        """Apply a batch to every target; the first record not settled everywhere, if any."""
        invocation = Invocation(asyncio.Event())
        table = batch.table
        work: dict[TargetRef, tuple[list[Change], Dead]] | None = None
        # A cold start's set-up (the DLQ table checked, the writers built) runs inside
        # the deadline too: a source region that does not answer cannot time it out.
        async with self._until_margin(context, invocation.stop, "their records are reported"):
            try:
                source = await self._source(batch, invocation.stop)
            except ShutdownInterrupted as exc:
                log.warning("%s: not ready before the deadline (%s)", table, exc)
            else:
                changes, dead = decode(
                    batch.records,
                    here=self.config.source_region,
                    meta=source.meta,
                    table=table,
                    skipped=lambda reason: self.metrics.skipped(table, reason),
                    selection=selection_for(self.config, source.pair),
                    kv=source.local is not None,
                )
                work = {
                    t: for_target(changes, dead, local=t == source.local) for t in source.writers
                }
                async with asyncio.TaskGroup() as group:
                    for target, (target_changes, target_dead) in work.items():
                        group.create_task(
                            self._apply_target(
                                source, target, invocation, target_changes, target_dead
                            )
                        )
        if work is not None:
            first = invocation.first_unsettled(work)
        else:  # not even set up: the whole batch comes again
            first = sequence_of(batch.records[0]) if batch.records else None
        if first is not None:
            log.warning(
                "%s: reporting from sequence number %s for the mapping to retry", table, first
            )
        return first

    async def _apply_target(
        self,
        source: _Source,
        target: TargetRef,
        invocation: Invocation,
        changes: list[Change],
        dead: Dead,
    ) -> None:
        table = source.pair.source_table
        writer = InvocationWriter(
            source.writers[target],
            invocation,
            source_table=table,
            target=target,
            metrics=self.metrics,
        )
        applier = applier_for(
            self.config,
            source.pair,
            target,
            writer=writer,
            dlq=InvocationDeadLetters(source.dlq, invocation),
            metrics=self.metrics,
            stop=invocation.stop,
        )
        try:
            await applier.apply(table, coalesce(changes, mode=self.config.mode), dead)
        except* ShutdownInterrupted:
            log.info("%s -> %s: stopped starting writes; the rest is reported", table, target)
        except* AwsError as errors:
            # A dead letter that could not be written for a retryable reason: its record
            # is not settled and is reported. Anything else (a missing table, a request
            # we built wrongly) fails the invocation loudly.
            fatal, _ = errors.split(lambda e: isinstance(e, AwsError) and not e.retryable)
            if fatal is not None:
                raise fatal from None
            invocation.stop.set()
            log.warning("%s -> %s: %s; the rest is reported", table, target, errors.exceptions)

    async def _source(self, batch: StreamBatch, stop: asyncio.Event) -> _Source:
        if batch.region != self.config.source_region:
            raise ConfigError(
                f"the stream {batch.stream_arn} is in {batch.region} but source_region is "
                f"{self.config.source_region}: deploy one function per source region"
            )
        if self._sources is None:
            self._sources = await self._build_sources(stop)
        source = self._sources.get(batch.table)
        if source is None:
            raise ConfigError(
                f"table {batch.table!r} (stream {batch.stream_arn}) is no source_table of "
                "replicator.yaml: add a pair for it or remove the mapping"
            )
        return source

    async def _build_sources(self, stop: asyncio.Event) -> dict[str, _Source]:
        config = self.config
        home = await self._clients.json("dynamodb", config.source_region)
        await ensure_table(home, config.dlq_table, CONTROL_KEY, retry=RetryPolicy(stop=stop))
        dlq = DeadLetterQueue(home, config.dlq_table)
        conflicts = conflict_feed(config, home, self.metrics)
        if conflicts is not None:
            await ensure_table(home, conflicts.table, CONTROL_KEY, retry=RetryPolicy(stop=stop))
        sources = {}
        for pair in config.pairs:
            targets, local = targets_of(config, pair)
            writers: dict[TargetRef, ChangeWriter] = {}
            for target in targets:
                writer = await target_writer(
                    config,
                    pair,
                    target,
                    self._clients,
                    self.metrics,
                    local=local,
                    conflicts=conflicts,
                )
                writers[target] = self._seam(target, writer) if self._seam else writer
            sources[pair.source_table] = _Source(pair, meta_for(config, pair), writers, local, dlq)
        return sources
