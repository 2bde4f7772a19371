"""Benchmark 2's view of the read side: is the pipeline, or the machine, what slows reads?

- ``TimedSource`` wraps the pipeline's stream source and adds up the time a GetRecords
  call was outstanding: records / that time is the rate moto served GetRecords *during*
  the drain, and that time / the drain's is the reader's busy share (a reader that waits
  for its lanes leaves the source idle);
- ``CpuMeter`` reads the CPU seconds each process of the run used meanwhile (moto, the
  fault proxy, the stub target, this process): on a machine of two cores they compete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.env import cpu_seconds
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Shard, StreamSource

REPLICATOR = "replicator (this process)"


@dataclass
class TimedSource:
    """A ``StreamSource`` that times its GetRecords calls."""

    inner: StreamSource
    busy_seconds: float = 0.0
    records: int = 0

    async def stream_arn(self, table: str) -> str:
        return await self.inner.stream_arn(table)

    async def shards(self, stream_arn: str) -> list[Shard]:
        return await self.inner.shards(stream_arn)

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        return await self.inner.iterator(stream_arn, shard_id, after=after)

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        started = time.perf_counter()
        try:
            page = await self.inner.get_records(iterator, limit=limit)
        finally:
            self.busy_seconds += time.perf_counter() - started
        self.records += len(page.records)
        return page


@dataclass
class CpuMeter:
    """CPU seconds per process since ``start()``; this process is ``REPLICATOR``."""

    processes: Mapping[str, int]
    _started: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        now[REPLICATOR] = cpu_seconds(os.getpid())
        return now

    def start(self) -> None:
        self._started = self._now()

    def used(self) -> dict[str, float]:
        return {name: seconds - self._started[name] for name, seconds in self._now().items()}


def cpu_note(used: Mapping[str, float], records: int) -> str:
    """'moto source 0.51 s, ... CPU per 1,000 records on N cores'."""
    per_thousand = ", ".join(
        f"{name} {seconds * 1000 / max(records, 1):.2f} s" for name, seconds in used.items()
    )
    return f"CPU per 1,000 records: {per_thousand}, on {os.cpu_count()} cores"
