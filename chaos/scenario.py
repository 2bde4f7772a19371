"""A chaos scenario's shape: its name, how long each phase lasts, and the seams a test
may replace.

Seams reach the in-process scenarios (the pipeline over the stream fake): a test swaps
the target writer or the stream source for a broken variant and checks that the suite
notices. The product has no switch for either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.outcome import Result
from replicator.apply.applier import ChangeWriter
from replicator.aws.backoff import Backoff
from replicator.aws.retry import RetryPolicy
from replicator.stream.source import StreamSource
from replicator.telemetry.metrics import Metrics

FAST = Backoff(base=0.01, cap=0.2)  # in-process faults are short: no need to wait long


def _same(thing: Any) -> Any:
    return thing


def _retry(stop: asyncio.Event, metrics: Metrics) -> RetryPolicy:
    return RetryPolicy(stop=stop, observer=metrics, backoff=FAST)


@dataclass(frozen=True)
class Seams:
    """What an in-process scenario builds its pipeline from; each wraps the real part."""

    put_client: Callable[[Any], Any] = _same  # the PutItem client of a target
    writer: Callable[[ChangeWriter], ChangeWriter] = _same
    source: Callable[[StreamSource], StreamSource] = _same
    retry: Callable[[asyncio.Event, Metrics], RetryPolicy] = _retry  # every AWS call's


@dataclass(frozen=True)
class Budget:
    """Seconds per phase, and how big the workload is."""

    warm: float  # the longest a replicator may take to replicate its first write
    before: float  # writes before the first fault
    fault: float  # how long a fault lasts
    blackhole: float  # how long a target region is blackholed
    after: float  # writes after the heal
    drain: float  # the longest the targets may take to converge after the writes stop
    keys: int  # hot key set per writer
    backlog: int  # records in a stream scenario's backlog
    share: float = 0.2  # share of requests faulted by the error scenarios


QUICK = Budget(
    warm=45, before=0.5, fault=2.5, blackhole=5.0, after=0.5, drain=30, keys=20, backlog=150
)
FULL = Budget(
    warm=60, before=5.0, fault=20.0, blackhole=90.0, after=5.0, drain=180, keys=80, backlog=1500
)


@dataclass
class Context:
    budget: Budget
    seed: int
    workdir: Path  # process logs and configs go here
    endpoints: dict[str, str]  # region -> moto server, shared by every scenario
    seams: Seams = field(default_factory=Seams)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # process | stream
    summary: str
    run: Callable[[Context, str], Awaitable[Result]]  # (context, name) -> result
