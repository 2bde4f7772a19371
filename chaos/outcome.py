"""What a chaos scenario measured and whether it passed, and the check that decides it.

The expectation is computed from the history alone: every successful application write
is logged (``replicator.demo.activeload.Write``) and the per-key last-writer-wins winner of
the log is what every target must show. Nothing the replicator reports is trusted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from replicator.demo.activeload import Write, winners

Visible = dict[str, Any] | None  # what a reader sees of a key: None when absent or a tombstone
EXAMPLES_KEPT = 5


@dataclass
class Diff:
    """How one region's table differs from the expectation."""

    differences: int = 0
    lost: int = 0  # the winner is live but the table lacks it or holds an older version
    resurrected: int = 0  # the winner is a delete but the table shows the key live
    examples: list[str] = field(default_factory=list)

    def add(self, other: Diff) -> None:
        self.differences += other.differences
        self.lost += other.lost
        self.resurrected += other.resurrected
        self.examples.extend(other.examples[: EXAMPLES_KEPT - len(self.examples)])


def expected_state(writes: Iterable[Write]) -> dict[str, Visible]:
    return {key: write.data for key, write in winners(list(writes)).items()}


def compare(expected: Mapping[str, Visible], actual: Mapping[str, Visible], *, region: str) -> Diff:
    """Per key, the expectation against what a region's readers see."""
    diff = Diff()
    for key in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(key), actual.get(key)
        if want == have:
            continue
        diff.differences += 1
        if want is not None and (have is None or _version(have) < _version(want)):
            diff.lost += 1
        elif want is None:
            diff.resurrected += 1
        if len(diff.examples) < EXAMPLES_KEPT:
            diff.examples.append(f"{region} {key}: has {have}, the winner is {want}")
    return diff


def _version(data: dict[str, Any]) -> int:
    try:
        return int(data.get("version", -1))
    except (TypeError, ValueError):
        return -1


@dataclass
class Timeline:
    """Lag samples and fault/heal marks, in seconds since the scenario started."""

    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    healed_at: float | None = None
    recovered_at: float | None = None
    measured_from: float = 0.0  # max lag counts from here: the replicators' start-up is not lag

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, label: str) -> None:
        self.marks.append((round(self.now(), 3), label))

    def heal(self) -> None:
        self.mark("heal")
        self.healed_at = self.now()

    @property
    def max_lag(self) -> float:
        return max((lag for t, lag in self.samples if t >= self.measured_from), default=0.0)

    @property
    def recovery(self) -> float | None:
        """Seconds from the heal until the target held every write made before it."""
        if self.healed_at is None or self.recovered_at is None:
            return None
        return max(0.0, self.recovered_at - self.healed_at)


@dataclass
class Result:
    name: str
    kind: str  # process | stream
    faults: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    diff: Diff = field(default_factory=Diff)
    alive: bool = True  # every replicator still running at the end (or restarted after a kill)
    poison: int = 0  # poison records written
    poison_in_dlq: int = 0
    required: dict[str, bool] = field(default_factory=dict)  # scenario-specific must-holds
    error: str | None = None
    timeline: Timeline = field(default_factory=Timeline)

    @property
    def failures(self) -> list[str]:
        found = []
        if self.error:
            found.append(self.error)
        if self.diff.differences:
            found.append(f"{self.diff.differences} keys differ: " + "; ".join(self.diff.examples))
        if not self.alive:
            found.append("a replicator died")
        if self.poison_in_dlq < self.poison:
            found.append(f"{self.poison - self.poison_in_dlq} poison records not in the DLQ")
        found.extend(f"{what} did not hold" for what, held in self.required.items() if not held)
        if self.writes == 0:
            found.append("nothing was written: the scenario proves nothing")
        if not any(self.faults.values()):
            found.append("no fault was injected: the scenario proves nothing")
        return found

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "verdict": "pass" if self.passed else "fail",
            "failures": self.failures,
            "faults_injected": self.faults,
            "writes": self.writes,
            "differences": self.diff.differences,
            "lost": self.diff.lost,
            "resurrected": self.diff.resurrected,
            "poison": self.poison,
            "poison_in_dlq": self.poison_in_dlq,
            "alive": self.alive,
            "required": self.required,
            "max_lag_s": round(self.timeline.max_lag, 3),
            "recovery_s": None
            if self.timeline.recovery is None
            else round(self.timeline.recovery, 3),
            "lag": self.timeline.samples,
            "marks": self.timeline.marks,
        }
