"""The figures as OpenTelemetry instruments: counters and gauges observed at scrape time.

Nothing here is updated per event; each callback reads ``Figures`` when the Prometheus
exporter collects, so the instruments can be built late and still export every figure.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from replicator.telemetry.figures import OUTCOMES, Figures
from replicator.telemetry.instruments import Instruments, Observer, build_instruments
from replicator.telemetry.state import PairState, labels


class Gauges:
    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def build(self) -> Instruments:
        """Every instrument replicator exports, each observing the figures."""
        gauges: dict[str, Observer] = {
            "replicator_heartbeat_lag_seconds": self._observe_heartbeat_lag,
            "replicator_heartbeat_age_seconds": self._observe_heartbeat_age,
            "replicator_in_flight_writes": self._observe_in_flight,
            "replicator_queue_depth": self._observe_queue_depth,
            "replicator_concurrency_limit": self._observe_concurrency_limit,
            "replicator_shards_owned": self._observe_shards_owned,
            "replicator_shards_without_reader": self._observe_without_reader,
            "replicator_aws_call_failing_seconds": self._observe_failing,
            "replicator_lease_active": self._observe_lease_active,
            "replicator_kinesis_millis_behind_latest": self._observe_millis_behind,
        }
        return build_instruments(
            counters=self._observe_counter,
            gauges=gauges,
            iterator_age=self._observe_iterator_age,
            lag=self._figures.lag,
        )

    def _observe_counter(self, name: str) -> list[Observation]:
        figures = self._figures
        with figures.lock:
            outcome = name.removeprefix("records_")
            if outcome in OUTCOMES:
                return [
                    Observation(state.outcomes[outcome], labels(table, target))
                    for (table, target), state in figures.pairs.items()
                    if state.outcomes[outcome]
                ]
            return [Observation(n, dict(key)) for key, n in figures.counts[name].items()]

    def _per_pair(self, value: Callable[[PairState, float], float | None]) -> Iterable[Observation]:
        now = self._figures.clock()
        with self._figures.lock:
            items = list(self._figures.pairs.items())
        for (source_table, target), state in items:
            figure = value(state, now)
            if figure is not None:
                yield Observation(figure, labels(source_table, target))

    def _observe_heartbeat_lag(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.heartbeat_lag)

    def _observe_heartbeat_age(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(self._figures.heartbeat_age)

    def _observe_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.in_flight())

    def _observe_queue_depth(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.queue_depth())

    def _observe_concurrency_limit(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_pair(lambda state, now: state.concurrency_limit())

    def _observe_shards_owned(self, _: CallbackOptions) -> Iterable[Observation]:
        figures = self._figures
        with figures.lock:
            owned = collections.Counter(
                table for (table, shard, _t), s in figures.shards.items() if s.reading
            )
            tables = {table for table, _ in figures.pairs} | set(owned)
        return [Observation(owned[t], {"source_table": t}) for t in sorted(tables)]

    def _observe_without_reader(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._figures.lock:
            counts = dict(self._figures.without_reader)
        return [Observation(n, {"source_table": t}) for t, n in sorted(counts.items())]

    def _observe_failing(self, _: CallbackOptions) -> Iterable[Observation]:
        now = self._figures.clock()
        with self._figures.lock:
            failing = sorted(self._figures.failing.items())
        return [
            Observation(now - since, {"call": call, "region": region})
            for (call, region), (since, _error) in failing
        ]

    def _observe_iterator_age(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._figures.lock:
            ages = sorted(self._figures.iterator_ages.items())
        return [Observation(age, {"source_table": t, "shard_id": s}) for (t, s), age in ages]

    def _observe_millis_behind(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._figures.lock:
            behind = sorted(self._figures.behind_latest.items())
        return [Observation(ms, {"source_table": t, "shard_id": s}) for (t, s), ms in behind]

    def _observe_lease_active(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(int(view["role"] == "active"), {"source_table": view["source_table"]})
            for view in self._figures.leases.status()
        ]
