"""Within one Lambda invocation a dead letter is bounded by the invocation's time.

The DLQ's retry policy waits a failing put out for as long as it lasts; a function
has minutes at most. Once the invocation stops, the record is not settled: it is
reported, and the mapping delivers it again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.errors import ShutdownInterrupted
from replicator.lambda_mode.batch import Invocation, InvocationDeadLetters, TargetWork
from replicator.models import TargetRef
from tests.records import image, record

pytestmark = pytest.mark.timeout(10)
TARGET = TargetRef("eu-west-1", "t")


class FailingForever:
    """A DLQ whose puts are being retried (a throttled DLQ table): they never return."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def put(self, **entry: Any) -> None:
        self.started.set()
        await asyncio.Event().wait()


class Accepting:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def put(self, **entry: Any) -> None:
        self.entries.append(entry)


async def test_a_dead_letter_still_failing_when_the_invocation_stops_is_left_unsettled() -> None:
    invocation = Invocation(asyncio.Event())
    dlq = FailingForever()
    poison = record("INSERT", 7, new=image("a", None))
    invocation.expect({TARGET: TargetWork([], {}, [(poison, "no version")])})
    put = asyncio.create_task(
        InvocationDeadLetters(dlq, invocation).put(
            source_table="s", target=TARGET, record=poison, reason="no version"
        )
    )
    await dlq.started.wait()
    invocation.stop.set()  # the remaining time fell below the margin
    with pytest.raises(ShutdownInterrupted):
        await put
    assert invocation.first_unsettled([poison]) == "7"


async def test_a_dead_letter_written_settles_its_record() -> None:
    invocation = Invocation(asyncio.Event())
    dlq = Accepting()
    poison = record("INSERT", 7, new=image("a", None))
    invocation.expect({TARGET: TargetWork([], {}, [(poison, "no version")])})
    await InvocationDeadLetters(dlq, invocation).put(
        source_table="s", target=TARGET, record=poison, reason="no version"
    )
    assert len(dlq.entries) == 1
    assert invocation.first_unsettled([poison]) is None
