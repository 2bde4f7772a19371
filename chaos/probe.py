"""Lag seen from outside, and the drain that waits for convergence.

A canary key is written to the source every ``interval`` seconds with a rising version;
each tick first reads which canary version every target holds. The lag is the age of
the oldest canary write a target does not hold yet, so it keeps growing while a target
is cut off, whatever the replicator itself believes. The recovery time is how long
after the heal the targets held every canary written before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chaos.outcome import Diff, Timeline
from replicator.aws.backoff import pause
from replicator.demo.activeload import Write

CANARY = "chaos-canary"


@dataclass
class Canary:
    write: Callable[[int], Awaitable[Write]]  # writes canary version n at the source
    seen: Callable[[], Awaitable[int]]  # the canary version every target holds (0: none)
    timeline: Timeline
    interval: float = 0.25
    log: list[Write] = field(default_factory=list)
    _written_at: dict[int, float] = field(default_factory=dict)
    _at_heal: int | None = None

    @property
    def latest(self) -> int:
        return len(self.log)

    def heal(self) -> None:
        """The faults end now: recovery is measured from here."""
        self._at_heal = self.latest
        self.timeline.heal()

    async def observe(self) -> None:
        """One lag sample (and the recovery time, once the targets caught up with the heal)."""
        held = await self.seen()
        now = self.timeline.now()
        lag = now - self._written_at[held + 1] if held < self.latest else 0.0
        self.timeline.samples.append((round(now, 3), round(lag, 3)))
        healed = self._at_heal is not None and held >= self._at_heal
        if healed and self.timeline.recovered_at is None:
            self.timeline.recovered_at = now

    async def run(self, stop: asyncio.Event, *, limit: float) -> None:
        """Observe then write, every ``interval``, until ``stop`` or ``limit`` seconds in."""
        while not stop.is_set() and self.timeline.now() < limit:
            await self.observe()
            version = self.latest + 1
            self._written_at[version] = self.timeline.now()
            self.log.append(await self.write(version))
            await pause(self.interval, stop)


async def drain(
    canary: Canary,
    check: Callable[[], Awaitable[Diff]],
    *,
    within: float,
    dead: Callable[[], bool],
    every: float = 0.5,
) -> Diff:
    """Re-check until nothing differs, ``within`` seconds pass or a replicator is ``dead``
    (nothing will change any more); the last check's answer."""
    deadline = canary.timeline.now() + within
    while True:
        await canary.observe()
        diff = await check()
        if not diff.differences or canary.timeline.now() >= deadline or dead():
            return diff
        await asyncio.sleep(every)
