"""Replication figures, counted in one place and exported three ways.

Components report events to ``Metrics``; it writes them into its ``Figures``, which
feed OpenTelemetry instruments (``gauges``, read by the Prometheus exporter for
``/metrics``) and the small in-process state behind ``/api/status``, the dashboard's
history, readiness (``status``) and the demo's live view.
Metric names are listed in docs/telemetry-contract.md.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from replicator.errors import AwsError, ThrottledError
from replicator.ha.lease import LeaseState
from replicator.models import Outcome, TargetRef
from replicator.telemetry.figures import Figures
from replicator.telemetry.gauges import Gauges
from replicator.telemetry.instruments import Instruments
from replicator.telemetry.state import ShardState, labels
from replicator.telemetry.status import readiness, sample_history, status_document

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class Metrics(Figures):
    def __init__(
        self,
        *,
        source_region: str = "",
        mode: str = "one-way",
        heartbeat_max_age: float | None = None,
        lease_max_age: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self._lease_max_age = lease_max_age
        self._service = {"source_region": source_region, "mode": mode}
        self._heartbeat_max_age = heartbeat_max_age
        # Set as the first record is settled on a target: start-up is over (the dashboard
        # starts then, out of the way of the first write).
        self.settled = asyncio.Event()

    @functools.cached_property
    def _otel(self) -> Instruments:
        # Built on first use (a scrape, or registry for a test): every instrument observes
        # the figures, so one built late exports the same figures.
        return Gauges(self).build()

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry ``/metrics`` exposes."""
        return self._otel.registry

    # -- events -----------------------------------------------------------------------

    def register_pair(
        self,
        source_table: str,
        target: TargetRef,
        *,
        in_flight: Callable[[], int] | None = None,
        queue_depth: Callable[[], int] | None = None,
        concurrency_limit: Callable[[], int] | None = None,
    ) -> None:
        with self.lock:
            state = self.pair(source_table, target)
            if in_flight:
                state.in_flight = in_flight
            if queue_depth:
                state.queue_depth = queue_depth
            if concurrency_limit:
                state.concurrency_limit = concurrency_limit

    def outcome(
        self, source_table: str, target: TargetRef, outcome: Outcome, *, lag: float | None = None
    ) -> None:
        """Count one settled record; ``lag``: seconds from its stream record to applied."""
        # The per-pair outcome counts are the records_<outcome> counters' values too.
        # One call (one lock, one lookup) per record: this runs for every record.
        self.settled.set()
        with self.lock:
            state = self.pair(source_table, target)
            state.outcomes[outcome.value] += 1
            if lag is not None:
                state.lags.append((self.clock(), lag))
                self.lag.observe((source_table, target.region, target.table), max(0.0, lag))

    def heartbeat(
        self, source_table: str, target: TargetRef, *, sent_at: float, lag: float
    ) -> None:
        with self.lock:
            state = self.pair(source_table, target)
            if state.heartbeat_sent_at is None or sent_at >= state.heartbeat_sent_at:
                state.heartbeat_sent_at, state.heartbeat_lag = sent_at, max(0.0, lag)

    def records_read(
        self,
        source_table: str,
        count: int,
        *,
        newest_created_at: float | None = None,
        shard_id: str = "",
    ) -> None:
        with self.lock:
            self.counts["records_read"][(("source_table", source_table),)] += count
        if newest_created_at is not None:
            age = max(0.0, self.clock() - newest_created_at)
            with self.lock:
                self.iterator_ages[(source_table, shard_id)] = age

    def millis_behind(self, source_table: str, shard_id: str, millis: int) -> None:
        with self.lock:
            self.behind_latest[(source_table, shard_id)] = millis

    def get_records_call(self, source_table: str) -> None:
        self._count("get_records_calls", ("source_table", source_table))

    def skipped(self, source_table: str, reason: str) -> None:
        self._count("records_skipped", ("source_table", source_table), ("reason", reason))

    def retried(self, reason: str) -> None:
        self._count("records_retried", ("reason", reason))
        if reason.startswith("throttl") or "Throughput" in reason or "Throttl" in reason:
            self._count("records_throttled", ("reason", reason))

    def call_failing(self, call: str, region: str, error: AwsError) -> None:
        """A retryable failure of an AWS call (``RetryObserver``): counted, and not ready."""
        reason = error.code or "retryable"
        self._count("records_retried", ("reason", reason))
        if isinstance(error, ThrottledError):
            self._count("records_throttled", ("reason", reason))
        with self.lock:
            since = self.failing.get((call, region), (self.clock(), ""))[0]
            self.failing[(call, region)] = (since, str(error))

    def call_recovered(self, call: str, region: str) -> None:
        with self.lock:
            self.failing.pop((call, region), None)

    def trimmed(self, source_table: str, shard_id: str) -> None:
        self._count("trimmed_data", ("source_table", source_table), ("shard_id", shard_id))

    def tie_read(self, source_table: str) -> None:
        """A source item read to settle a tie of rule K (DESIGN §4c)."""
        self._count("kinesis_tie_reads", ("source_table", source_table))

    def version_regression(self, source_table: str, target: TargetRef) -> None:
        self._count("version_regressions", *labels(source_table, target).items())

    def conflict(
        self, source_table: str, target: TargetRef, *, loser_region: str, winner_region: str
    ) -> None:
        """A write last-writer-wins discarded (DESIGN §4b), detected writing into ``target``,
        whether or not its entry was kept."""
        self._count(
            "conflicts",
            ("source_table", source_table),
            ("loser_region", loser_region),
            ("winner_region", winner_region),
        )

    def conflict_recorded(self, summary: dict[str, Any]) -> None:
        """An entry is in the feed: ``summary`` (its ``id``, table, key and both sides) is
        listed by ``/api/status`` among the latest; a redelivery's entry is listed once."""
        with self.lock:
            if all(kept["id"] != summary["id"] for kept in self.recent_conflicts):
                self.recent_conflicts.append(summary)

    def conflict_unrecorded(self, source_table: str) -> None:
        self._count("conflicts_unrecorded", ("source_table", source_table))

    def shard(
        self,
        source_table: str,
        shard_id: str,
        target: TargetRef,
        *,
        reading: bool | None = None,
        checkpoint: str | None = None,
        ended: bool | None = None,
    ) -> None:
        key = (source_table, shard_id, target)
        with self.lock:
            state = self.shards.setdefault(key, ShardState())
            if reading is not None:
                state.reading = reading
            if checkpoint is not None:
                state.checkpoint = checkpoint
            if ended is not None:
                state.ended = ended
            if state.ended and not state.reading:
                # Read to its end: history. Dropped, so that the status and the series of a
                # long-running process do not grow with every shard rollover.
                del self.shards[key]
                if not any(k[:2] == key[:2] for k in self.shards):
                    self.iterator_ages.pop((source_table, shard_id), None)
                    self.behind_latest.pop((source_table, shard_id), None)

    def lease(self, source_table: str, state: LeaseState, holder: str) -> None:
        self.leases.report(source_table, state, holder)

    def shards_without_reader(self, source_table: str, count: int) -> None:
        with self.lock:
            self.without_reader[source_table] = count

    def _count(self, name: str, *label_pairs: tuple[str, str]) -> None:
        with self.lock:
            self.counts[name][label_pairs] += 1

    # -- reading ----------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def total(self, name: str) -> int:
        """A figure summed over every label set: an outcome name or a key of ``TOTALS``."""
        with self.lock:
            return self.summed(name)

    def sample(self) -> None:
        """Append one point per pair to the dashboard history (call once a second)."""
        sample_history(self)

    def ready(self) -> tuple[bool, str]:
        return readiness(
            self, heartbeat_max_age=self._heartbeat_max_age, lease_max_age=self._lease_max_age
        )

    def status(self) -> dict[str, Any]:
        """The ``/api/status`` document (schema in docs/telemetry-contract.md)."""
        return status_document(self, self._service)

    def shutdown(self) -> None:
        if "_otel" in self.__dict__:  # built: never build the SDK only to shut it down
            self._otel.provider.shutdown()
