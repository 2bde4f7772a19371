"""The OpenTelemetry instruments, read by the Prometheus exporter on ``/metrics``.

Each ``Metrics`` has its own registry, so several services (and tests) can live in
one process without mixing their series. Every instrument observes ``Metrics``' own
state when collected, so they are built on first use: the OpenTelemetry SDK and
prometheus_client cost 60 ms of imports, which ``replicator run`` spends after its first
write rather than before it (bench 10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Observation

from replicator.telemetry.lag_histogram import LagHistogram

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)

COUNTERS = {
    "records_applied": "Writes applied on a target.",
    "records_superseded": "Writes refused because the target held a newer state.",
    "records_duplicate": "Redelivered writes the target already held.",
    "records_dead_lettered": "Records sent to the DLQ with a reason.",
    "version_regressions": "Active-active re-creates that lost to their own tombstone.",
    "conflicts": "Active-active writes last-writer-wins discarded (the conflict feed).",
    "conflicts_unrecorded": "Conflict-feed entries that could not be written (logged).",
    "records_retried": "Write or read attempts retried after a retryable error.",
    "records_throttled": "Requests refused by throttling.",
    "records_read": "Stream records read.",
    "records_skipped": "Stream records deliberately not replicated (echo, expiry).",
    "get_records_calls": "GetRecords requests.",
    "trimmed_data": "Stream ranges trimmed before they were read: data loss alarm.",
    "kinesis_tie_reads": "Source items read to settle a tie of rule K (Kinesis pairs).",
}
GAUGES = {
    "replicator_heartbeat_lag_seconds": "Lag of the newest heartbeat applied on the target.",
    "replicator_heartbeat_age_seconds": "Age of the newest heartbeat applied on the target.",
    "replicator_in_flight_writes": "Conditional writes in flight.",
    "replicator_queue_depth": "Batches queued per lane.",
    "replicator_concurrency_limit": "Writes the target may have in flight (adaptive or pinned).",
    "replicator_shards_owned": "Shards with a reader.",
    "replicator_shards_without_reader": "Readable shards nobody reads.",
    "replicator_aws_call_failing_seconds": "How long an AWS call has been failing and retried.",
    "replicator_lease_active": "1 while this process holds the table's lease and replicates it.",
    "replicator_kinesis_millis_behind_latest": "How far a Kinesis shard's reader is behind "
    "the stream's tip, in ms.",
}
Observer = Callable[[CallbackOptions], Iterable[Observation]]


@dataclass(frozen=True)
class Instruments:
    registry: CollectorRegistry
    provider: MeterProvider


def build_instruments(
    *,
    counters: Callable[[str], Iterable[Observation]],
    gauges: Mapping[str, Observer],
    iterator_age: Observer,
    lag: LagHistogram,
) -> Instruments:
    """Every instrument replicator exports, in a registry of their own.

    ``counters(name)`` reports each counter's current values by label set at collection
    time; ``gauges`` feed the observable gauges, ``iterator_age`` the age of the last
    record read per shard; ``lag`` is collected as it is.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    registry.register(lag)  # a collector by its collect(), as prometheus_client asks
    meter = provider.get_meter("replicator")
    for name, observer in gauges.items():
        meter.create_observable_gauge(name, callbacks=[observer], description=GAUGES[name])
    meter.create_observable_gauge(
        "replicator_iterator_age_seconds",
        callbacks=[iterator_age],
        unit="s",
        description="Age of the last record read.",
    )
    for name, text in COUNTERS.items():
        meter.create_observable_counter(
            f"replicator_{name}", callbacks=[_counter_observer(counters, name)], description=text
        )
    return Instruments(registry=registry, provider=provider)


def _counter_observer(counters: Callable[[str], Iterable[Observation]], name: str) -> Observer:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        return counters(name)

    return observe
