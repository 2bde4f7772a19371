"""Replication figures, counted in one place and exported three ways.

Components report events to ``Metrics``; it feeds OpenTelemetry instruments (read
by the Prometheus exporter for ``/metrics``) and keeps the small in-process state
behind ``/api/status``, the dashboard's history, readiness and the demo's live view.
Metric names are listed in docs/telemetry-contract.md.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import time
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Observation

from replicator.checkpoint import TargetRef
from replicator.errors import AwsError, ThrottledError
from replicator.lease import LeaseState
from replicator.models import Outcome
from replicator.telemetry.instruments import COUNTERS, LAG_BUCKETS, Instruments, build_instruments
from replicator.telemetry.lag_histogram import LagHistogram
from replicator.telemetry.leases import LeaseBoard
from replicator.telemetry.state import PairKey, PairState, ShardState, labels, quantile

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

Labels = tuple[tuple[str, str], ...]
_OUTCOMES_IN_ORDER = tuple(o.value for o in Outcome)
_OUTCOMES = frozenset(_OUTCOMES_IN_ORDER)
# Totals that are sums of a counter over its label sets: name -> counter.
TOTALS = {
    "records_read": "records_read",
    "retries": "records_retried",
    "trimmed": "trimmed_data",
    "version_regressions": "version_regressions",
}
HISTORY_SAMPLES = 600  # one a second: ten minutes of dashboard chart
# A call that has failed for this long without a success turns /readyz false: single
# faults (a throttle, one 500) come and go under load and are not worth a flapping probe.
FAILING_NOT_READY_SECONDS = 5.0


class Metrics:
    def __init__(
        self,
        *,
        source_region: str = "",
        mode: str = "one-way",
        heartbeat_max_age: float | None = None,
        lease_max_age: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.leases = LeaseBoard(clock)
        self._lease_max_age = lease_max_age
        self._lock = threading.Lock()
        self._started_at = clock()
        self._service = {"source_region": source_region, "mode": mode}
        self._heartbeat_max_age = heartbeat_max_age
        self._pairs: dict[PairKey, PairState] = {}
        self._shards: dict[tuple[str, str, TargetRef], ShardState] = {}
        self._without_reader: dict[str, int] = {}
        # (call, region) -> (when it started failing, the latest error): retries in progress.
        self._failing: dict[tuple[str, str], tuple[float, str]] = {}
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY_SAMPLES)
        # Counters are kept here and observed at scrape time: an OpenTelemetry add() per
        # record cost more CPU than the rest of the pipeline (bench/profiles).
        self._counts: dict[str, collections.Counter[Labels]] = {
            name: collections.Counter() for name in COUNTERS
        }
        self._lag = LagHistogram(LAG_BUCKETS)
        # (source_table, shard_id) -> age of the last record read there, in seconds.
        self._iterator_ages: dict[tuple[str, str], float] = {}
        # Set as the first record is settled on a target: start-up is over (the dashboard
        # starts then, out of the way of the first write).
        self.settled = asyncio.Event()

    @functools.cached_property
    def _otel(self) -> Instruments:
        # Built on first use (a scrape, or registry for a test): every instrument observes
        # the state above, so one built late exports the same figures.
        return build_instruments(
            counters=self._observe_counter,
            gauges={
                "replicator_heartbeat_lag_seconds": self._observe_heartbeat_lag,
                "replicator_heartbeat_age_seconds": self._observe_heartbeat_age,
                "replicator_in_flight_writes": self._observe_in_flight,
                "replicator_queue_depth": self._observe_queue_depth,
                "replicator_concurrency_limit": self._observe_concurrency_limit,
                "replicator_shards_owned": self._observe_shards_owned,
                "replicator_shards_without_reader": self._observe_without_reader,
                "replicator_aws_call_failing_seconds": self._observe_failing,
                "replicator_lease_active": self._observe_lease_active,
            },
            iterator_age=self._observe_iterator_age,
            lag=self._lag,
        )

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
        with self._lock:
            state = self._pair(source_table, target)
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
        with self._lock:
            state = self._pair(source_table, target)
            state.outcomes[outcome.value] += 1
            if lag is not None:
                state.lags.append((self._clock(), lag))
                self._lag.observe((source_table, target.region, target.table), max(0.0, lag))

    def heartbeat(
        self, source_table: str, target: TargetRef, *, sent_at: float, lag: float
    ) -> None:
        with self._lock:
            state = self._pair(source_table, target)
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
        with self._lock:
            self._counts["records_read"][(("source_table", source_table),)] += count
        if newest_created_at is not None:
            age = max(0.0, self._clock() - newest_created_at)
            with self._lock:
                self._iterator_ages[(source_table, shard_id)] = age

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
        with self._lock:
            since = self._failing.get((call, region), (self._clock(), ""))[0]
            self._failing[(call, region)] = (since, str(error))

    def call_recovered(self, call: str, region: str) -> None:
        with self._lock:
            self._failing.pop((call, region), None)

    def trimmed(self, source_table: str, shard_id: str) -> None:
        self._count("trimmed_data", ("source_table", source_table), ("shard_id", shard_id))

    def version_regression(self, source_table: str, target: TargetRef) -> None:
        self._count("version_regressions", *labels(source_table, target).items())

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
        with self._lock:
            state = self._shards.setdefault((source_table, shard_id, target), ShardState())
            if reading is not None:
                state.reading = reading
            if checkpoint is not None:
                state.checkpoint = checkpoint
            if ended is not None:
                state.ended = ended

    def lease(self, source_table: str, state: LeaseState, holder: str) -> None:
        self.leases.report(source_table, state, holder)

    def shards_without_reader(self, source_table: str, count: int) -> None:
        with self._lock:
            self._without_reader[source_table] = count

    def _count(self, name: str, *label_pairs: tuple[str, str]) -> None:
        with self._lock:
            self._counts[name][label_pairs] += 1

    def _observe_counter(self, name: str) -> list[Observation]:
        with self._lock:
            outcome = name.removeprefix("records_")
            if outcome in _OUTCOMES:
                return [
                    Observation(state.outcomes[outcome], labels(table, target))
                    for (table, target), state in self._pairs.items()
                    if state.outcomes[outcome]
                ]
            return [Observation(n, dict(key)) for key, n in self._counts[name].items()]

    def _pair(self, source_table: str, target: TargetRef) -> PairState:
        key = (source_table, target)
        state = self._pairs.get(key)
        if state is None:
            state = self._pairs[key] = PairState()
        return state

    # -- observable gauges ------------------------------------------------------------

    def _per_pair(self, value: Callable[[PairState, float], float | None]) -> Iterable[Observation]:
        now = self._clock()
        with self._lock:
            items = list(self._pairs.items())
        for (source_table, target), state in items:
            figure = value(state, now)
            if figure is not None:
                yield Observation(figure, labels(source_table, target))

    def _observe_heartbeat_lag(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.heartbeat_lag)

    def _observe_heartbeat_age(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(self._heartbeat_age)

    def _observe_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.in_flight())

    def _observe_queue_depth(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.queue_depth())

    def _observe_concurrency_limit(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.concurrency_limit())

    def _observe_shards_owned(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            owned = collections.Counter(
                table for (table, shard, _t), s in self._shards.items() if s.reading
            )
            tables = {table for table, _ in self._pairs} | set(owned)
        return [Observation(owned[t], {"source_table": t}) for t in sorted(tables)]

    def _observe_without_reader(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = dict(self._without_reader)
        return [Observation(n, {"source_table": t}) for t, n in sorted(counts.items())]

    def _observe_failing(self, _: CallbackOptions) -> Iterable[Observation]:
        now = self._clock()
        with self._lock:
            failing = sorted(self._failing.items())
        return [
            Observation(now - since, {"call": call, "region": region})
            for (call, region), (since, _error) in failing
        ]

    def _observe_iterator_age(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            ages = sorted(self._iterator_ages.items())
        return [Observation(age, {"source_table": t, "shard_id": s}) for (t, s), age in ages]

    def _observe_lease_active(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(int(view["role"] == "active"), {"source_table": view["source_table"]})
            for view in self.leases.status()
        ]

    def _heartbeat_age(self, state: PairState, now: float) -> float:
        # Before the first heartbeat arrives the age counts from start-up, so a pipeline
        # that never delivers anything reads as stalled, never as "lag 0".
        return now - (state.heartbeat_sent_at or self._started_at)

    # -- reading ----------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def total(self, name: str) -> int:
        """A figure summed over every label set: an outcome name or a key of ``TOTALS``."""
        with self._lock:
            return self._total(name)

    def _total(self, name: str) -> int:
        if name in _OUTCOMES:
            return sum(state.outcomes[name] for state in self._pairs.values())
        return sum(self._counts[TOTALS[name]].values())

    def sample(self) -> None:
        """Append one point per pair to the dashboard history (call once a second)."""
        now = self._clock()
        point: dict[str, Any] = {"t": now, "pairs": {}}
        with self._lock:
            for (source_table, target), state in self._pairs.items():
                settled = sum(state.outcomes.values())
                elapsed = now - self._history[-1]["t"] if self._history else 0.0
                if elapsed > 0:
                    state.throughput = (settled - state.settled_at_last_sample) / elapsed
                state.settled_at_last_sample = settled
                recent = state.recent_lags(now)
                point["pairs"][f"{source_table} -> {target}"] = {
                    "p50": quantile(recent, 0.5),
                    "p99": quantile(recent, 0.99),
                    "heartbeat_lag": state.heartbeat_lag,
                    "throughput": round(state.throughput, 3),
                }
            self._history.append(point)

    def ready(self) -> tuple[bool, str]:
        now = self._clock()
        with self._lock:
            waiting = sum(self._without_reader.values())
            if waiting:
                return False, f"{waiting} shard(s) have no reader"
            for (call, region), (since, error) in sorted(self._failing.items()):
                if now - since >= FAILING_NOT_READY_SECONDS:
                    return False, (
                        f"{call} in {region} failing for {now - since:.1f} s, retrying: {error}"
                    )
            if self._heartbeat_max_age is not None:
                for (source_table, target), state in self._pairs.items():
                    if self.leases.active(source_table) is False:
                        continue  # a standby applies nothing: its canary age means nothing
                    age = self._heartbeat_age(state, now)
                    if age > self._heartbeat_max_age:
                        return False, (
                            f"heartbeat {source_table} -> {target} is {age:.1f} s old "
                            f"(limit {self._heartbeat_max_age:.0f} s)"
                        )
        if stale := self.leases.stale(self._lease_max_age):
            return False, stale
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """The ``/api/status`` document (schema in docs/telemetry-contract.md)."""
        now = self._clock()
        with self._lock:
            pairs = []
            for (source_table, target), state in self._pairs.items():
                recent = state.recent_lags(now)
                pairs.append(
                    {
                        "source_table": source_table,
                        "target": str(target),
                        "target_region": target.region,
                        "target_table": target.table,
                        **{o.value: state.outcomes[o.value] for o in Outcome},
                        "in_flight": state.in_flight(),
                        "concurrency_limit": state.concurrency_limit(),
                        "throughput_per_second": round(state.throughput, 3),
                        "lag_seconds": {
                            "last": state.lags[-1][1] if state.lags else None,
                            "p50": quantile(recent, 0.5),
                            "p99": quantile(recent, 0.99),
                        },
                        "heartbeat": {
                            "lag_seconds": state.heartbeat_lag,
                            "age_seconds": round(self._heartbeat_age(state, now), 3),
                        },
                    }
                )
            shards = [
                {
                    "source_table": table,
                    "shard_id": shard_id,
                    "target": str(target),
                    "checkpoint": s.checkpoint,
                    "ended": s.ended,
                    "reading": s.reading,
                }
                for (table, shard_id, target), s in sorted(
                    self._shards.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))
                )
            ]
            totals: dict[str, Any] = {
                name: self._total(name) for name in (*TOTALS, *_OUTCOMES_IN_ORDER)
            }
            skipped: collections.Counter[str] = collections.Counter()
            for label_pairs, count in self._counts["records_skipped"].items():
                skipped[dict(label_pairs)["reason"]] += count
            totals["skipped"] = dict(skipped)
            history = list(self._history)
        return {
            "service": {
                **self._service,
                "role": self.leases.role(),
                "instance": self.leases.owner,
                "started_at": self._started_at,
                "now": now,
                "version": version("replicator"),
            },
            "totals": totals,
            "pairs": pairs,
            "shards": shards,
            "leases": self.leases.status(),
            "history": history,
        }

    def shutdown(self) -> None:
        if "_otel" in self.__dict__:  # built: never build the SDK only to shut it down
            self._otel.provider.shutdown()
