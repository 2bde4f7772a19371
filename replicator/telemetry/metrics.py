"""Replication figures, counted in one place.

Every component reports through ``Metrics``; the live terminal view, the status
API and the exporters read from it.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from dataclasses import dataclass, field

from replicator.checkpoint import TargetRef
from replicator.models import Outcome

LAG_WINDOW = 4096


@dataclass
class PairFigures:
    """Counters for one (source table, target)."""

    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    lags: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LAG_WINDOW)
    )
    last_lag: float | None = None

    def lag_quantile(self, q: float) -> float | None:
        if not self.lags:
            return None
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    records_read: int
    skipped: dict[str, int]
    retries: int
    trimmed: int
    version_regressions: int
    pairs: dict[tuple[str, str], dict[str, float | int | None]]

    def total(self, outcome: Outcome) -> int:
        return sum(int(p.get(outcome.value) or 0) for p in self.pairs.values())


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str], PairFigures] = collections.defaultdict(PairFigures)
        self._read = 0
        self._skipped: collections.Counter[str] = collections.Counter()
        self._retries = 0
        self._trimmed = 0
        self._regressions = 0

    def outcome(self, source_table: str, target: TargetRef, outcome: Outcome) -> None:
        with self._lock:
            self._pairs[(source_table, str(target))].outcomes[outcome.value] += 1

    def lag(self, source_table: str, target: TargetRef, seconds: float) -> None:
        with self._lock:
            figures = self._pairs[(source_table, str(target))]
            figures.lags.append(seconds)
            figures.last_lag = seconds

    def records_read(self, source_table: str, count: int) -> None:
        with self._lock:
            self._read += count

    def skipped(self, source_table: str, reason: str) -> None:
        with self._lock:
            self._skipped[reason] += 1

    def retried(self, reason: str) -> None:
        with self._lock:
            self._retries += 1

    def trimmed(self, source_table: str, shard_id: str) -> None:
        with self._lock:
            self._trimmed += 1

    def version_regression(self, source_table: str, target: TargetRef) -> None:
        with self._lock:
            self._regressions += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            pairs: dict[tuple[str, str], dict[str, float | int | None]] = {}
            for key, figures in self._pairs.items():
                row: dict[str, float | int | None] = {
                    o.value: figures.outcomes[o.value] for o in Outcome
                }
                row["lag_last"] = figures.last_lag
                row["lag_p50"] = figures.lag_quantile(0.5)
                row["lag_p99"] = figures.lag_quantile(0.99)
                row["lag_mean"] = statistics.fmean(figures.lags) if figures.lags else None
                pairs[key] = row
            return Snapshot(
                taken_at=time.time(),
                records_read=self._read,
                skipped=dict(self._skipped),
                retries=self._retries,
                trimmed=self._trimmed,
                version_regressions=self._regressions,
                pairs=pairs,
            )
