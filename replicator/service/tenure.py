"""Containers in a deployment take turns per source table (DESIGN §6).

Every ``replicator run`` with the same config runs ``replicate_under_lease`` for each
source table: it stands by (reading only the lease item) until it holds the lease, then
replicates for as long as it may write, and stands by again when it loses it. On
shutdown the active process drains, checkpoints and releases the lease, so a standby
takes over at once instead of waiting the lease out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from replicator.ha.keeper import LeaseKeeper
from replicator.pipeline.pair import PairPipeline
from replicator.telemetry.heartbeat import HeartbeatWriter

Tenure = Callable[[asyncio.Event], Awaitable[None]]
"""Replicates one table until the event is set, then drains and returns."""


def replicating(
    build: Callable[..., Awaitable[PairPipeline]],
    beat: HeartbeatWriter | None,
    *,
    on_end: Callable[[], None],
    checked: Callable[[], Awaitable[bool]],
) -> Tenure:
    """A tenure: a pipeline from ``build(stop=ending)``, and the table's heartbeat, until ending.

    Both are built anew for each tenure: a process that lost the lease starts the next one
    from the checkpoints, as a standby taking over does. The heartbeat, a write the targets
    are to replicate, starts once the targets' start-up check passed (``checked``).
    """

    async def beating(ending: asyncio.Event) -> None:
        if beat is not None and await checked():
            await beat.run(ending)

    async def replicate(ending: asyncio.Event) -> None:
        pipeline = await build(stop=ending)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(pipeline.run())
                group.create_task(beating(ending))
        finally:
            on_end()

    return replicate


async def replicate_under_lease(keeper: LeaseKeeper, tenure: Tenure, stop: asyncio.Event) -> None:
    """Stand by, replicate while the lease is held, repeat until ``stop``; then release."""
    while await keeper.acquire(stop):
        ending = asyncio.Event()  # lease lost, fenced or shutdown: stop reading and drain
        done = asyncio.Event()  # the tenure drained: renewals may stop
        # A write the fence refuses ends the tenure at once (``LeaseKeeper.tenure``).
        with keeper.tenure(ending):
            async with asyncio.TaskGroup() as group:
                # The keeper renews through the drain: its last writes still need the lease.
                group.create_task(keeper.hold(ending, done))
                group.create_task(end_on(stop, ending))
                try:
                    await tenure(ending)
                finally:
                    done.set()
                    ending.set()
        if stop.is_set():
            break
    await keeper.release()


async def end_on(stop: asyncio.Event, ending: asyncio.Event) -> None:
    """Set ``ending`` once ``stop`` is set; return as soon as either is."""
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(ending.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    ending.set()
