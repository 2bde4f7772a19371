"""``max_writes_per_second`` paces a target's writes, fractions included (0.5: one every 2 s).

The applier is built as ``replicator run`` builds it (``applier_for`` from a parsed config)
and runs on looptime's event loop, whose clock moves only when every task waits: the gaps
between writes are read off that clock, exact and independent of the machine's load.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from replicator.config.schema import parse_config
from replicator.models import Change, ItemKey, Meta, Outcome, TargetRef
from replicator.service.run import applier_for
from replicator.stream.records import to_change
from replicator.telemetry.metrics import Metrics
from tests.fakes import DeadLetters
from tests.records import image, record

HERE, THERE = "us-east-1", "eu-west-1"
META = Meta(version="version")
pytestmark = pytest.mark.timeout(10)


class ClockedWriter:
    """A target that answers at once and notes the event loop's time of every write."""

    def __init__(self) -> None:
        self.written_at: list[float] = []

    async def put(self, change: Change, *, now: float) -> Outcome:
        self.written_at.append(asyncio.get_running_loop().time())
        return Outcome.APPLIED


def changes(count: int) -> dict[ItemKey, list[Change]]:
    per_key: dict[ItemKey, list[Change]] = {}
    for n in range(count):
        change = to_change(record("INSERT", n + 1, new=image(f"k{n}", 1)), here=HERE, meta=META)
        assert isinstance(change, Change)
        per_key[change.key] = [change]
    return per_key


async def written_at(rate: float, writes: int) -> list[float]:
    config = parse_config(
        {
            "source_region": HERE,
            "pairs": [
                {
                    "source_table": "orders",
                    "targets": [{"region": THERE, "table": "orders"}],
                    "max_writes_per_second": rate,
                }
            ],
        }
    )
    (pair,) = config.pairs
    writer = ClockedWriter()
    applier = applier_for(
        config,
        pair,
        TargetRef(THERE, "orders"),
        writer=writer,
        dlq=DeadLetters(),
        metrics=Metrics(),
        stop=asyncio.Event(),
    )
    await applier.apply("orders", changes(writes))
    return writer.written_at


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [round(b - a, 3) for a, b in itertools.pairwise(ordered)]


@pytest.mark.looptime
async def test_half_a_write_per_second_is_one_write_every_two_seconds() -> None:
    assert gaps(await written_at(0.5, 4)) == [2.0, 2.0, 2.0]


@pytest.mark.looptime
async def test_four_writes_per_second_start_at_once_then_take_a_quarter_second_each() -> None:
    # The bucket starts full: four writes at once, then one per turn that leaks out.
    assert gaps(await written_at(4, 8)) == [0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25]
