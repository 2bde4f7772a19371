"""The in-process state every export of the figures reads.

``Metrics`` writes it as components report events; the OpenTelemetry instruments
(``gauges``), the status document, its history and readiness (``status``) read it.
One lock guards all of it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from replicator.models import Outcome, TargetRef
from replicator.telemetry.instruments import COUNTERS, LAG_BUCKETS
from replicator.telemetry.lag_histogram import LagHistogram
from replicator.telemetry.leases import LeaseBoard
from replicator.telemetry.state import PairKey, PairState, ShardState

Labels = tuple[tuple[str, str], ...]
OUTCOMES_IN_ORDER = tuple(o.value for o in Outcome)
OUTCOMES = frozenset(OUTCOMES_IN_ORDER)
# Totals that are sums of a counter over its label sets: name -> counter.
TOTALS = {
    "records_read": "records_read",
    "retries": "records_retried",
    "trimmed": "trimmed_data",
    "version_regressions": "version_regressions",
    "conflicts": "conflicts",
}
HISTORY_SAMPLES = 600  # one a second: ten minutes of dashboard chart
RECENT_CONFLICTS = 20  # the dashboard's latest feed entries; the table holds them all


class Figures:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.leases = LeaseBoard(clock)
        self.lock = threading.Lock()
        self.started_at = clock()
        self.pairs: dict[PairKey, PairState] = {}
        self.shards: dict[tuple[str, str, TargetRef], ShardState] = {}
        self.without_reader: dict[str, int] = {}
        # (call, region) -> (when it started failing, the latest error): retries in progress.
        self.failing: dict[tuple[str, str], tuple[float, str]] = {}
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY_SAMPLES)
        # Summaries of the conflict-feed entries this process wrote, oldest first.
        self.recent_conflicts: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=RECENT_CONFLICTS
        )
        # Counters are kept here and observed at scrape time: an OpenTelemetry add() per
        # record cost more CPU than the rest of the pipeline (bench/profiles).
        self.counts: dict[str, collections.Counter[Labels]] = {
            name: collections.Counter() for name in COUNTERS
        }
        self.lag = LagHistogram(LAG_BUCKETS)
        # (source_table, shard_id) -> age of the last record read there, in seconds.
        self.iterator_ages: dict[tuple[str, str], float] = {}
        # (source_table, shard_id) -> Kinesis's MillisBehindLatest of the last page read.
        self.behind_latest: dict[tuple[str, str], int] = {}

    def pair(self, source_table: str, target: TargetRef) -> PairState:
        """The pair's state, created on first sight; the caller holds ``lock``."""
        key = (source_table, target)
        state = self.pairs.get(key)
        if state is None:
            state = self.pairs[key] = PairState()
        return state

    def summed(self, name: str) -> int:
        """``Metrics.total`` for a caller that already holds ``lock``."""
        if name in OUTCOMES:
            return sum(state.outcomes[name] for state in self.pairs.values())
        return sum(self.counts[TOTALS[name]].values())

    def heartbeat_age(self, state: PairState, now: float) -> float:
        # Before the first heartbeat arrives the age counts from start-up, so a pipeline
        # that never delivers anything reads as stalled, never as "lag 0".
        return now - (state.heartbeat_sent_at or self.started_at)
