"""The in-process figures behind the status document and the dashboard history."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from replicator.models import TargetRef

LAG_WINDOW_SECONDS = 60.0


def labels(source_table: str, target: TargetRef) -> dict[str, str]:
    return {
        "source_table": source_table,
        "target_region": target.region,
        "target_table": target.table,
    }


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile: the smallest value with at least ``q`` of them at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


PairKey = tuple[str, TargetRef]


@dataclass
class PairState:
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    lags: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=8192)
    )
    heartbeat_lag: float | None = None
    heartbeat_sent_at: float | None = None
    settled_at_last_sample: int = 0
    throughput: float = 0.0
    in_flight: Callable[[], int] = lambda: 0
    queue_depth: Callable[[], int] = lambda: 0
    concurrency_limit: Callable[[], int] = lambda: 0

    def recent_lags(self, now: float) -> list[float]:
        return [lag for at, lag in self.lags if at >= now - LAG_WINDOW_SECONDS]


@dataclass
class ShardState:
    checkpoint: str | None = None
    ended: bool = False
    reading: bool = False
