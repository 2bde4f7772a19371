"""Lambda mode's execution environment: ``LambdaFunction`` applies each invocation's batch.

The mapping (with ``FunctionResponseTypes: [ReportBatchItemFailures]``) owns shards,
checkpoints, retries and bisecting (DESIGN §6); the handler applies one batch with
the container pipeline's own code: ``batches.decode`` (filter), ``batches.for_target``,
``records.coalesce`` and a ``TargetApplier`` per target, so per-key order, bounded
concurrency and the conflict rule are the same.

A DynamoDB stream's batch goes to its table's pair. A Kinesis data stream's batch
(a table's Kinesis streaming destination, DESIGN §4c) goes to every pair whose
``kinesis_stream`` names the stream (``sources``); each decodes it for its own table,
so records of other tables are skipped there, and applies it by rule K.

- Records every target has (applied, superseded, duplicate, or dead-lettered by the
  handler itself with the reason) are done; the response names the first record that
  is not, for any pair: ``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``
  (the DynamoDB SequenceNumber, or the Kinesis sequenceNumber), and the
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
from collections.abc import AsyncIterator
from typing import Any, Protocol

from replicator.aws.factory import Clients
from replicator.config.schema import Config
from replicator.errors import AwsError, ShutdownInterrupted
from replicator.lambda_mode.batch import (
    Invocation,
    InvocationDeadLetters,
    InvocationWriter,
    TargetWork,
)
from replicator.lambda_mode.event import KinesisBatch, StreamBatch, is_scheduled, stream_batch
from replicator.lambda_mode.metrics import EmfMetrics
from replicator.lambda_mode.sources import (
    Source,
    WriterSeam,
    build_sources,
    check_region,
    sources_of,
)
from replicator.models import TargetRef
from replicator.pipeline.batches import decode, for_target
from replicator.service.startup import heartbeat_writers
from replicator.service.wiring import applier_for, selection_for
from replicator.stream.records import coalesce, sequence_of
from replicator.telemetry.heartbeat import HeartbeatWriter

log = logging.getLogger(__name__)

# Time kept back from the function's timeout: a write started later may not finish,
# and a timed-out invocation makes the mapping retry the whole batch.
DEFAULT_MARGIN_MS = 1000


class Context(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


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
        self._sources: dict[str, Source] | None = None
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

    async def _apply(self, batch: StreamBatch | KinesisBatch, context: Context) -> str | None:
        """Apply a batch to every target; the first record not settled everywhere, if any."""
        invocation = Invocation(asyncio.Event())
        name = batch.table if isinstance(batch, StreamBatch) else f"stream {batch.stream}"
        ready = False
        # A cold start's set-up (the DLQ table checked, the writers built) runs inside
        # the deadline too: a source region that does not answer cannot time it out.
        async with self._until_margin(context, invocation.stop, "their records are reported"):
            try:
                sources = await self._sources_of(batch, invocation.stop)
            except ShutdownInterrupted as exc:
                log.warning("%s: not ready before the deadline (%s)", name, exc)
            else:
                work = {
                    target: (source, taken)
                    for source in sources
                    for target, taken in self._work_of(batch, source).items()
                }
                invocation.expect({target: taken for target, (_, taken) in work.items()})
                ready = True
                async with asyncio.TaskGroup() as group:
                    for target, (source, taken) in work.items():
                        group.create_task(self._apply_target(source, target, invocation, taken))
        if ready:
            first = invocation.first_unsettled(batch.records)
        else:  # not even set up: the whole batch comes again
            first = sequence_of(batch.records[0]) if batch.records else None
        if first is not None:
            log.warning(
                "%s: reporting from sequence number %s for the mapping to retry", name, first
            )
        return first

    def _work_of(
        self, batch: StreamBatch | KinesisBatch, source: Source
    ) -> dict[TargetRef, TargetWork]:
        """What each of ``source``'s targets takes of the batch: its own table's records
        (a Kinesis stream may carry others), decoded, filtered and coalesced."""
        table = source.pair.source_table
        changes, dead = decode(
            batch.records,
            here=self.config.source_region,
            meta=source.meta,
            table=table,
            skipped=lambda reason: self.metrics.skipped(table, reason),
            selection=selection_for(self.config, source.pair),
            kv=source.local is not None,
        )
        work = {}
        for target in source.writers:
            taken, dead_here = for_target(changes, dead, local=target == source.local)
            coalesced = coalesce(taken, mode=self.config.mode)
            work[target] = TargetWork(taken, coalesced, dead_here)
        return work

    async def _apply_target(
        self,
        source: Source,
        target: TargetRef,
        invocation: Invocation,
        work: TargetWork,
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
            await applier.apply(table, work.coalesced, work.dead)
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

    async def _sources_of(
        self, batch: StreamBatch | KinesisBatch, stop: asyncio.Event
    ) -> list[Source]:
        check_region(self.config, batch)
        if self._sources is None:
            self._sources = await build_sources(
                self.config, self._clients, self.metrics, seam=self._seam, stop=stop
            )
        return sources_of(self._sources, batch)
