"""Start-up checks run together; a failing one reads as itself, and stops the others."""

from __future__ import annotations

import asyncio

import pytest

from replicator.errors import ConfigError
from replicator.service.startup import concurrently

pytestmark = pytest.mark.timeout(10)


async def test_every_check_is_in_flight_before_any_answers() -> None:
    # Each check waits for all the others to have started: sent one after another, the
    # first would wait forever.
    barrier = asyncio.Barrier(3)

    async def check(name: str) -> str:
        await barrier.wait()
        return name

    assert await concurrently(check("control"), check("source"), check("target")) == [
        "control",
        "source",
        "target",
    ]


async def test_a_failed_check_is_raised_as_itself_and_the_others_are_cancelled() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def missing_table() -> None:
        raise ConfigError("table t does not exist in eu-west-1 — create it or fix the config")

    with pytest.raises(ConfigError, match="does not exist"):
        await concurrently(slow(), missing_table())
    assert cancelled.is_set()
