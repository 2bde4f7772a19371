"""A key's run left to the next batch's run (cross-batch coalescing) hands its kv on:
DESIGN §4b, a coalesced run's kv merges every record of the run."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from replicator.apply.applier import TargetApplier
from replicator.models import Change, Outcome, TargetRef
from replicator.stream.records import coalesce
from replicator.telemetry.metrics import Metrics
from tests.unit.test_conflict_feed_rule import P, Q, T, app, rep, write_in

pytestmark = pytest.mark.timeout(10)


class GatedWriter:
    """Holds the first write until ``gate`` opens, so later batches queue behind it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()
        self.written: list[Change] = []

    async def put(self, change: Change, *, now: float) -> Outcome:
        self.written.append(change)
        self.writing.set()
        await self.gate.wait()
        return Outcome.APPLIED


class NoDeadLetters:
    async def put(self, **_: Any) -> None:
        raise AssertionError("nothing here is dead-lettered")


async def test_a_run_written_by_its_successor_passes_its_kv_on() -> None:
    writer = GatedWriter()
    metrics = Metrics()
    applier = TargetApplier(writer, NoDeadLetters(), target=TargetRef(T, "t"), metrics=metrics)
    first = asyncio.create_task(applier.apply("t", coalesce([write_in(P, 1)])))
    await writer.writing.wait()

    async def release() -> None:
        writer.gate.set()

    # v2 knew Q's v1; v3 is a whole-item PutItem that dropped ``_rep_kv``. Both batches
    # claim the key (in gather's order) before the gate opens, so v2 is left to v3.
    knew_q = applier.apply("t", coalesce([write_in(P, 2, old=rep(1, Q))]))
    dropped = applier.apply("t", coalesce([write_in(P, 3, old=app(2))]))
    await asyncio.gather(knew_q, dropped, release())
    await first
    metrics.shutdown()
    assert [c.incoming.version for c in writer.written] == [1, 3]
    assert writer.written[1].kv == {Q: Decimal(2), P: Decimal(6)}
