"""``FakeStream``: an in-memory ``StreamSource`` that scripts what moto cannot.

moto has one shard per table and never splits, expires iterators or trims (DESIGN §8),
so readers and the pipeline are tested against this fake instead: splits, expired
iterators, trimmed data, duplicate delivery and throttling are one call each.

Iterators are self-describing tokens (epoch, index, shard), so the fake holds no
per-iterator state and ``get_records`` costs O(batch) whatever the stream length;
benchmarks rely on that. Its records are built by ``fake_records``.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from replicator.errors import (
    AwsError,
    ExpiredIteratorError,
    ResourceNotFound,
    ThrottledError,
    TrimmedDataError,
)
from replicator.stream.fake_records import stream_record
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Shard

# Real sequence numbers are 21+ digit decimals; starting there keeps padding bugs visible.
FIRST_SEQUENCE = 10**20


@dataclass
class _ShardLog:
    shard_id: str
    parent_id: str | None
    starting: int
    records: list[dict[str, Any]] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    ending: int | None = None
    trimmed: int = 0  # index of the oldest record still readable
    listed: bool = True
    replays: deque[list[dict[str, Any]]] = field(default_factory=deque)

    def shard(self) -> Shard:
        ending = None if self.ending is None else str(self.ending)
        return Shard(self.shard_id, self.parent_id, str(self.starting), ending)


class FakeStream:
    """One table's stream, in memory, starting with a single open shard."""

    def __init__(
        self,
        table: str = "table",
        *,
        region: str = "us-east-1",
        shard_id: str = "shard-0000",
        clock: Callable[[], dt.datetime] | None = None,
        latency: float = 0.0,
    ) -> None:
        self.table = table
        self.region = region
        self.arn = f"arn:aws:dynamodb:{region}:000000000000:table/{table}/stream/fake"
        self.latency = latency
        self.get_records_calls = 0
        self.iterator_calls = 0
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._next_sequence = FIRST_SEQUENCE
        self._epoch = 0
        self._logs: dict[str, _ShardLog] = {}
        self._faults: dict[str, deque[AwsError]] = {"get_records": deque(), "iterator": deque()}
        self._called = asyncio.Event()
        self.open_shard(shard_id)

    # -- scripting -------------------------------------------------------------------

    def open_shard(self, shard_id: str, parent_id: str | None = None) -> Shard:
        if shard_id in self._logs:
            raise ValueError(f"shard {shard_id} already exists")
        self._logs[shard_id] = _ShardLog(shard_id, parent_id, self._next_sequence)
        return self._logs[shard_id].shard()

    def put(self, shard_id: str | None, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``record`` with the stream's next sequence number; returns the stored copy."""
        log = self._log(shard_id) if shard_id is not None else self._writable()
        if log.ending is not None:
            raise ValueError(f"shard {log.shard_id} is closed")
        sequence = self._next_sequence
        self._next_sequence += 1
        body = dict(record["dynamodb"])
        body["SequenceNumber"] = str(sequence)
        if "ApproximateCreationDateTime" not in body:
            body["ApproximateCreationDateTime"] = self._clock()
        stored = {**record, "dynamodb": body, "awsRegion": record.get("awsRegion", self.region)}
        log.records.append(stored)
        log.sequences.append(sequence)
        return stored

    def insert(
        self, keys: Mapping[str, Any], new: Mapping[str, Any], *, shard_id: str | None = None
    ) -> dict[str, Any]:
        return self.put(shard_id, self._record("INSERT", keys, new=new))

    def modify(
        self,
        keys: Mapping[str, Any],
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        *,
        shard_id: str | None = None,
    ) -> dict[str, Any]:
        return self.put(shard_id, self._record("MODIFY", keys, new=new, old=old))

    def remove(
        self,
        keys: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        *,
        shard_id: str | None = None,
        ttl: bool = False,
    ) -> dict[str, Any]:
        return self.put(shard_id, self._record("REMOVE", keys, old=old, ttl=ttl))

    def close(self, shard_id: str) -> Shard:
        """Close a shard: once its records are read, GetRecords ends it (no next iterator)."""
        log = self._log(shard_id)
        if log.ending is None:
            log.ending = log.sequences[-1] if log.sequences else log.starting
        return log.shard()

    def split(self, parent_id: str, child_ids: Iterable[str]) -> list[Shard]:
        """Close ``parent_id`` and open its children; later default writes go to the first."""
        self.close(parent_id)
        return [self.open_shard(child, parent_id) for child in child_ids]

    def drop_shard(self, shard_id: str) -> None:
        """The shard aged out of the stream: no longer listed, its records are gone."""
        log = self._log(shard_id)
        self.close(shard_id)
        log.listed = False
        log.trimmed = len(log.records)

    def vanish(self, shard_id: str) -> None:
        """The shard aged out right after it was listed: every call about it is refused
        with ``ResourceNotFound`` from now on, as DynamoDB refuses an unknown shard."""
        del self._logs[shard_id]

    def expire_iterators(self) -> None:
        """Every iterator handed out so far now raises ``ExpiredIteratorError``."""
        self._epoch += 1

    def trim(self, shard_id: str, before_sequence: str) -> None:
        """Records older than ``before_sequence`` are gone; reading them is TrimmedData."""
        log = self._log(shard_id)
        log.trimmed = max(log.trimmed, bisect.bisect_left(log.sequences, int(before_sequence)))

    def duplicate(self, shard_id: str, first_sequence: str, last_sequence: str) -> int:
        """The next reads of the shard deliver this range again before going on."""
        log = self._log(shard_id)
        start = bisect.bisect_left(log.sequences, int(first_sequence))
        end = bisect.bisect_right(log.sequences, int(last_sequence))
        if end > start:
            log.replays.append(log.records[start:end])
        return end - start

    def throttle(self, times: int = 1) -> None:
        """The next ``times`` GetRecords calls are throttled."""
        code = "ProvisionedThroughputExceededException"
        self.fail(ThrottledError("fake throttle", code=code), times)

    def fail(
        self,
        error: AwsError,
        times: int = 1,
        *,
        call: Literal["get_records", "iterator"] = "get_records",
    ) -> None:
        """The next ``times`` calls of ``call`` raise ``error``."""
        self._faults[call].extend([error] * times)

    def sequences(self, shard_id: str) -> list[str]:
        return [str(sequence) for sequence in self._log(shard_id).sequences]

    async def wait_for_get_records(self, count: int) -> None:
        """Return once GetRecords has been called ``count`` times in all."""
        while self.get_records_calls < count:
            await self._called.wait()

    # -- StreamSource ----------------------------------------------------------------

    async def stream_arn(self, table: str) -> str:
        if table != self.table:
            raise ResourceNotFound(f"table {table!r} has no stream", code="NoStream")
        return self.arn

    async def shards(self, stream_arn: str) -> list[Shard]:
        self._check_arn(stream_arn)
        return [log.shard() for log in self._logs.values() if log.listed]

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        self.iterator_calls += 1
        self._check_arn(stream_arn)
        if self._faults["iterator"]:
            raise self._faults["iterator"].popleft()
        log = self._log(shard_id)
        index = log.trimmed if after is None else bisect.bisect_right(log.sequences, int(after))
        if index < log.trimmed:
            raise _trimmed(log, index)
        return f"fake|{self._epoch}|{index}|{shard_id}"

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        self.get_records_calls += 1
        called, self._called = self._called, asyncio.Event()
        called.set()
        await asyncio.sleep(self.latency)  # even 0 yields, as real I/O would
        if self._faults["get_records"]:
            raise self._faults["get_records"].popleft()
        if not 1 <= limit <= MAX_RECORDS_PER_CALL:
            raise AwsError(f"limit {limit} out of range", code="ValidationException")
        epoch, index, log = self._parse(iterator)
        if epoch != self._epoch:
            raise ExpiredIteratorError("Iterator expired", code="ExpiredIteratorException")
        if log.replays:
            replay = log.replays.popleft()
            if len(replay) > limit:
                log.replays.appendleft(replay[limit:])
            return Page(replay[:limit], iterator)
        if index < log.trimmed:
            raise _trimmed(log, index)
        end = min(index + limit, len(log.records))
        ended = log.ending is not None and end >= len(log.records)
        next_iterator = None if ended else f"fake|{epoch}|{end}|{log.shard_id}"
        return Page(log.records[index:end], next_iterator)

    # -- internals -------------------------------------------------------------------

    def _record(self, event_name: Any, keys: Mapping[str, Any], **images: Any) -> dict[str, Any]:
        return stream_record(event_name, keys, region=self.region, created=self._clock(), **images)

    def _log(self, shard_id: str) -> _ShardLog:
        try:
            return self._logs[shard_id]
        except KeyError:
            raise ResourceNotFound(
                f"shard {shard_id} not found", code="ResourceNotFoundException"
            ) from None

    def _writable(self) -> _ShardLog:
        for log in self._logs.values():
            if log.ending is None:
                return log
        raise ValueError("every shard is closed: open or split one first")

    def _check_arn(self, stream_arn: str) -> None:
        if stream_arn != self.arn:
            raise ResourceNotFound(
                f"stream {stream_arn} not found", code="ResourceNotFoundException"
            )

    def _parse(self, iterator: str) -> tuple[int, int, _ShardLog]:
        parts = iterator.split("|", 3)
        if len(parts) != 4 or parts[0] != "fake" or not (parts[1] + parts[2]).isdigit():
            raise AwsError(f"invalid shard iterator {iterator!r}", code="ValidationException")
        return int(parts[1]), int(parts[2]), self._log(parts[3])


def _trimmed(log: _ShardLog, index: int) -> TrimmedDataError:
    oldest = log.sequences[log.trimmed] if log.trimmed < len(log.sequences) else "end"
    return TrimmedDataError(
        f"shard {log.shard_id}: position {index} is before the trim horizon (oldest {oldest})",
        code="TrimmedDataAccessException",
    )
