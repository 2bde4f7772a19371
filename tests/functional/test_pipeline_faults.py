"""The whole PairPipeline against what a stream and a target do to it (DESIGN §4, §5, §8).

The stream is ``FakeStream`` (splits, expired iterators, trimming and duplicates are
what moto cannot do), targets are in-memory tables written with the pure conflict
rule, and checkpoints are the real ``CheckpointStore`` on the embedded moto backend.
Tests wait on conditions (every fake notifies a shared ``Signal``), never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from replicator.apply.applier import TargetApplier
from replicator.apply.limit import INITIAL_LIMIT
from replicator.aws.backoff import Backoff
from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.errors import AwsError, ThrottledError
from replicator.models import Checkpoint, ItemKey, Meta, Mode, Outcome, TargetRef, item_key, pad_seq
from replicator.pipeline.lane import LANE_WINDOW
from replicator.pipeline.pair import QUEUED_BATCHES_PER_LANE, READ_AHEAD_PAGES, PairPipeline
from replicator.stream.fake import FakeStream
from replicator.stream.fake_records import stream_record
from replicator.stream.source import DYNAMODB_STREAMS, MAX_RECORDS_PER_CALL, Page, Reading
from replicator.telemetry.metrics import Metrics
from tests.fakes import (
    DeadLetters,
    Event,
    RecordingCheckpoints,
    Saved,
    Seek,
    Signal,
    TableWriter,
    Write,
    replay,
)

HERE = "us-east-1"
EU = TargetRef("eu-west-1", "orders")
AP = TargetRef("ap-southeast-2", "orders")
META = Meta(version="version")
SHARD = "shard-0000"
TINY = Backoff(base=0.001, cap=0.005)
STOP_TIMEOUT = 5.0

THROTTLED = ThrottledError("slow down", code="ProvisionedThroughputExceededException")


class ScriptedStream(FakeStream):
    """A FakeStream that runs ``before_get_records(n)`` before its n-th GetRecords call
    and notes every iterator request in the journal."""

    def __init__(self, table: str, journal: list[Event]) -> None:
        super().__init__(table, region=HERE, shard_id=SHARD)
        self.before_get_records: Callable[[int], None] | None = None
        self._journal = journal

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        self._journal.append(Seek(shard_id))
        return await super().iterator(stream_arn, shard_id, after=after)

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        if self.before_get_records is not None:
            self.before_get_records(self.get_records_calls + 1)
        return await super().get_records(iterator, limit=limit)


@dataclass
class Rig:
    """One source stream, its targets, DLQ and checkpoints; builds pipelines over them."""

    stream: ScriptedStream
    control_client: Any
    control_table: str
    signal: Signal
    journal: list[Event]
    dlq: DeadLetters
    checkpoints: RecordingCheckpoints = field(init=False)
    writers: dict[TargetRef, TableWriter] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.restart_checkpoints()

    def restart_checkpoints(self) -> None:
        """A fresh store over the same control table, as a restarted process has."""
        self.checkpoints = RecordingCheckpoints(
            self.control_client, self.control_table, signal=self.signal, journal=self.journal
        )

    def writer(
        self, target: TargetRef, *, turns: int = 0, mode: Mode = Mode.ONE_WAY
    ) -> TableWriter:
        writer = TableWriter(
            target, meta=META, mode=mode, signal=self.signal, journal=self.journal, turns=turns
        )
        self.writers[target] = writer
        return writer

    def pipeline(
        self,
        metrics: Metrics,
        *,
        targets: Sequence[TargetRef] = (EU,),
        max_concurrency: int | Literal["auto"] = 8,
        max_writes_per_second: float | None = None,
        records_per_call: int = MAX_RECORDS_PER_CALL,
        local_target: TargetRef | None = None,
        checkpoint_interval: float = 0.0,  # a save per batch: tests see each position
        reading: Reading = DYNAMODB_STREAMS,
    ) -> PairPipeline:
        stop = asyncio.Event()
        appliers = [
            TargetApplier(
                self.writers.get(target) or self.writer(target),
                self.dlq,
                target=target,
                metrics=metrics,
                max_concurrency=max_concurrency,
                max_writes_per_second=max_writes_per_second,
                backoff=TINY,
                stop=stop,
            )
            for target in targets
        ]
        return PairPipeline(
            source_table=self.stream.table,
            region=HERE,
            meta=META,
            source=self.stream,
            appliers=appliers,
            checkpoints=self.checkpoints,
            metrics=metrics,
            stop=stop,
            discovery_interval=0.02,
            idle_backoff=TINY,
            retry_backoff=TINY,
            records_per_call=records_per_call,
            local_target=local_target,
            checkpoint_interval=checkpoint_interval,
            reading=reading,
        )

    @contextlib.asynccontextmanager
    async def running(self, pipeline: PairPipeline) -> AsyncIterator[asyncio.Task[None]]:
        """Run ``pipeline``; on exit stop it and require ``run()`` to return promptly."""
        self.task = asyncio.create_task(pipeline.run())
        try:
            yield self.task
        finally:
            pipeline.stop.set()
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.task

    async def until(self, condition: Callable[[], bool], *, within: float = 5.0) -> None:
        await self.signal.until(condition, within=within, watch=self.task)

    def checkpointed(self, shard_id: str, sequence: str, *targets: TargetRef) -> Callable[[], bool]:
        """A condition: every target's checkpoint of ``shard_id`` is at ``sequence`` or past."""

        def reached() -> bool:
            for target in targets or tuple(self.writers):
                checkpoint = self.checkpoints.latest(shard_id, target)
                if checkpoint is None or checkpoint.sequence_number is None:
                    return False
                if pad_seq(checkpoint.sequence_number) < pad_seq(sequence):
                    return False
            return True

        return reached

    def ended(self, shard_id: str, *targets: TargetRef) -> Callable[[], bool]:
        def reached() -> bool:
            return all(
                (cp := self.checkpoints.latest(shard_id, t)) is not None and cp.shard_ended
                for t in targets or tuple(self.writers)
            )

        return reached

    def expected(
        self,
        records: Iterable[dict[str, Any]],
        target: TargetRef = EU,
        mode: Mode = Mode.ONE_WAY,
    ) -> Any:
        ordered = sorted(records, key=lambda r: int(r["dynamodb"]["SequenceNumber"]))
        return replay(ordered, here=HERE, target_region=target.region, meta=META, mode=mode)


@pytest.fixture
async def control_client(endpoints: dict[str, str]) -> AsyncIterator[Any]:
    clients = Clients(endpoints)
    try:
        yield await clients.json("dynamodb", HERE)
    finally:
        await clients.aclose()


@pytest.fixture
async def rig(control_client: Any, unique_name: str) -> Rig:
    await ensure_table(control_client, unique_name, CONTROL_KEY)
    signal = Signal()
    journal: list[Event] = []
    return Rig(
        stream=ScriptedStream(f"src-{unique_name}", journal),
        control_client=control_client,
        control_table=unique_name,
        signal=signal,
        journal=journal,
        dlq=DeadLetters(signal),
    )


@pytest.fixture
def new_metrics() -> Iterable[Callable[[], Metrics]]:
    made: list[Metrics] = []

    def make() -> Metrics:
        made.append(Metrics(source_region=HERE))
        return made[-1]

    yield make
    for metrics in made:
        metrics.shutdown()


@pytest.fixture
def metrics(new_metrics: Callable[[], Metrics]) -> Metrics:
    return new_metrics()


def key(name: str) -> dict[str, str]:
    return {"pk": name}


def ikey(name: str) -> ItemKey:
    return item_key({"pk": {"S": name}})


def seq(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def versions(state: dict[ItemKey, Any]) -> dict[str, tuple[int, bool]]:
    """Per key name: (version, tombstone), the visible outcome an operator compares."""
    return {k[0][2]: (int(s.version), s.tombstone) for k, s in state.items()}


def garbled_time(record: dict[str, Any]) -> dict[str, Any]:
    """The record with a creation time that is not a time (a type error: DLQ)."""
    return {**record, "dynamodb": {**record["dynamodb"], "ApproximateCreationDateTime": "soon"}}


def history(stream: FakeStream, keys: Sequence[str], rounds: int) -> list[dict[str, Any]]:
    """Interleaved per-key histories: updates, deletes and re-creates (version reset)."""
    records: list[dict[str, Any]] = []
    live: dict[str, int] = {}
    for step in range(rounds):
        for name in keys:
            version = live.get(name)
            if version is None:
                records.append(stream.insert(key(name), {"version": 1, "step": step}))
                live[name] = 1
            elif (step + len(name)) % 3 == 2:
                records.append(stream.remove(key(name), {"version": version}))
                del live[name]
            else:
                new = {"version": version + 1, "step": step}
                records.append(stream.modify(key(name), {"version": version}, new))
                live[name] = version + 1
    return records


# -- 1. shard lineage -------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("split", ["before-start", "while-running"])
async def test_children_are_read_only_after_the_parent_is_applied_and_checkpointed(
    rig: Rig, metrics: Metrics, split: str
) -> None:
    stream = rig.stream
    parent = [
        stream.insert(key("a"), {"version": 1}),
        stream.insert(key("b"), {"version": 1}),
        stream.modify(key("a"), {"version": 1}, {"version": 2}),
    ]
    pipeline = rig.pipeline(metrics, targets=(EU, AP))

    def split_and_write() -> list[dict[str, Any]]:
        stream.split(SHARD, ["child-1", "child-2"])
        return [
            stream.modify(key("a"), {"version": 2}, {"version": 3}, shard_id="child-1"),
            stream.modify(key("b"), {"version": 1}, {"version": 2}, shard_id="child-2"),
            stream.insert(key("c"), {"version": 1}, shard_id="child-2"),
        ]

    children = split_and_write() if split == "before-start" else []
    async with rig.running(pipeline):
        if split == "while-running":
            await rig.until(rig.checkpointed(SHARD, seq(parent[-1])))
            children = split_and_write()
        await rig.until(rig.checkpointed("child-1", seq(children[0])))
        await rig.until(rig.checkpointed("child-2", seq(children[2])))

    child_sequences = {seq(r) for r in children}
    first_child_read = next(
        i
        for i, e in enumerate(rig.journal)
        if isinstance(e, Seek) and e.shard_id in ("child-1", "child-2")
    )
    first_child_write = next(
        i
        for i, e in enumerate(rig.journal)
        if isinstance(e, Write) and e.sequence_number in child_sequences
    )
    parent_ended = [
        i
        for i, e in enumerate(rig.journal)
        if isinstance(e, Saved) and e.checkpoint.shard_id == SHARD and e.checkpoint.shard_ended
    ]
    assert len(parent_ended) == 2, "the parent ends once per target"
    assert max(parent_ended) < first_child_read < first_child_write, (
        "a child shard was read before its parent was applied and checkpointed everywhere"
    )
    for target in (EU, AP):
        state = rig.writers[target].state()
        assert versions(state) == {"a": (3, False), "b": (2, False), "c": (1, False)}
        assert state == rig.expected(parent + children, target)
    # The parent, read to its end, is history: the status lists only the shards still open.
    assert {s["shard_id"] for s in metrics.status()["shards"]} == {"child-1", "child-2"}


@pytest.mark.timeout(30)
async def test_a_record_without_a_sequence_number_is_dead_lettered_and_the_shard_read_on(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    stored = stream.insert(key("odd"), {"version": 1})
    del stored["dynamodb"]["SequenceNumber"]  # the stored copy: served as it is now
    later = stream.insert(key("later"), {"version": 1})
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(rig.checkpointed(SHARD, seq(later)))
    [entry] = rig.dlq.entries
    assert "SequenceNumber" in entry.reason
    assert versions(rig.writers[EU].state()) == {"later": (1, False)}


# -- 2. expired iterators ---------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_expired_iterators_mid_stream_lose_and_reorder_nothing(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    records = history(stream, ["a", "bb", "ccc", "dddd"], rounds=8)
    # Every third GetRecords finds its iterator expired: the reader must re-seek after
    # the last record it delivered, neither skipping nor repeating a range.
    expiries = 0

    def expire(call: int) -> None:
        nonlocal expiries
        if call % 3 == 0:
            expiries += 1
            stream.expire_iterators()

    stream.before_get_records = expire
    writer = rig.writer(EU)
    async with rig.running(rig.pipeline(metrics, records_per_call=3)):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))

    assert expiries >= len(records) // 3 // 2, "the script expired iterators mid-stream"
    assert metrics.total("retries") >= expiries
    assert writer.state() == rig.expected(records)
    for written in writer.sequences_by_key().values():
        assert written == sorted(set(written)), "a key was written out of stream order"
    assert metrics.total("records_read") == len(records), "a range was read twice"


# -- 3. trimmed data --------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_trimmed_data_raises_the_alarm_and_replication_goes_on(
    rig: Rig, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(10)]
    # The third read finds k4..k6 trimmed away (the reader fell 24 h behind).
    stream.before_get_records = lambda call: (
        stream.trim(SHARD, seq(records[7])) if call == 3 else None
    )
    writer = rig.writer(EU)
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics, records_per_call=2)):
            await rig.until(rig.checkpointed(SHARD, seq(records[-1])))
            later = stream.insert(key("later"), {"version": 1})
            await rig.until(rig.checkpointed(SHARD, seq(later)))

    assert metrics.total("trimmed") == 1, "the data-loss alarm did not fire"
    assert any(SHARD in r.getMessage() and "trimmed" in r.getMessage() for r in caplog.records)
    written = {k[0][2] for k in writer.state()}
    assert written == {"k0", "k1", "k2", "k3", "k7", "k8", "k9", "later"}


# -- 4. write throttling ----------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_throttled_writes_are_retried_counted_and_all_applied(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": i + 1}) for i in range(6)]
    writer = rig.writer(EU)
    writer.fail_next(THROTTLED, times=7)
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))

    assert metrics.total("retries") == 7
    assert metrics.total(Outcome.APPLIED.value) == 6
    assert writer.attempts == 6 + 7
    assert writer.state() == rig.expected(records)


@pytest.mark.timeout(30)
async def test_the_write_rate_cap_holds_for_retried_attempts_too(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(12)]
    writer = rig.writer(EU)
    writer.fail_next(THROTTLED, times=12)  # the target refuses as many writes as it takes
    cap = 8
    async with rig.running(rig.pipeline(metrics, max_writes_per_second=cap)):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])), within=15)

    assert writer.attempts == 24 and writer.state() == rig.expected(records)
    times = writer.attempted_at
    # The cap admits ``cap`` attempts per second; the margin covers the step from the
    # pacer's clock reading to the attempt's.
    busiest = max(sum(1 for t in times if start <= t < start + 0.98) for start in times)
    assert busiest <= cap


@pytest.mark.timeout(30)
async def test_a_throttling_target_shrinks_the_adaptive_limit_and_every_write_still_lands(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(40)]
    writer = rig.writer(EU)
    writer.fail_all(THROTTLED)
    pipeline = rig.pipeline(metrics, max_concurrency="auto")
    (applier,) = pipeline.appliers
    assert applier.limit.limit == INITIAL_LIMIT
    async with rig.running(pipeline):
        await rig.until(lambda: applier.limit.limit < INITIAL_LIMIT / 2)
        writer.heal()
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))
    assert writer.state() == rig.expected(records)


# -- 5. poison records ------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_poison_records_go_to_the_dlq_with_a_reason_and_the_checkpoint_passes_them(
    rig: Rig, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.stream
    writer = rig.writer(EU)
    too_big = AwsError(
        "Item size has exceeded the maximum", code="ValidationException", record_fault=True
    )
    writer.fail_key({"pk": {"S": "big"}}, too_big)
    records = [
        stream.insert(key("a"), {"version": 1}),
        stream.insert(key("big"), {"version": 1}),
        stream.insert(key("text"), {"version": "seven"}),
        stream.insert(key("b"), {"version": 1}),
        stream.insert(key("none"), {"data": "no version at all"}),
        stream.put(SHARD, garbled_time(stream_record("INSERT", key("when"), new={"version": 1}))),
    ]
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics)):
            await rig.until(rig.checkpointed(SHARD, seq(records[-1])))

    # Every dead-letter line names the table, the key and the reason.
    lines = [r.getMessage() for r in caplog.records if "dead-lettering" in r.getMessage()]
    assert len(lines) == 4
    big = next(line for line in lines if "pk=big" in line)
    assert stream.table in big and str(EU) in big and "ValidationException" in big
    assert any("pk=none" in line and "numeric version" in line for line in lines)
    reasons = {e.sequence_number: e.reason for e in rig.dlq.entries}
    assert set(reasons) == {seq(records[i]) for i in (1, 2, 4, 5)}
    assert "ValidationException" in reasons[seq(records[1])]
    assert "numeric version" in reasons[seq(records[2])]
    assert "numeric version" in reasons[seq(records[4])]
    assert "ApproximateCreationDateTime" in reasons[seq(records[5])]
    assert all(e.target == EU and e.record["dynamodb"]["Keys"] for e in rig.dlq.entries)
    assert metrics.total(Outcome.DEAD_LETTERED.value) == 4
    assert versions(writer.state()) == {"a": (1, False), "b": (1, False)}


@pytest.mark.timeout(30)
async def test_the_next_batch_is_applied_while_a_checkpoint_is_written_and_saves_keep_order(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    first = [stream.insert(key(f"a{i}"), {"version": 1}) for i in range(3)]
    writer = rig.writer(EU)
    rig.checkpoints.gate.close()
    async with rig.running(rig.pipeline(metrics)) as run:
        await rig.until(lambda: rig.checkpoints.gate.held == 1)
        second = [stream.insert(key(f"b{i}"), {"version": 1}) for i in range(3)]
        # The lane does not idle while the first batch's checkpoint is being written.
        await rig.until(lambda: len(writer.writes) == len(first) + len(second))
        assert rig.checkpoints.saved == []
        rig.checkpoints.gate.open()
        await rig.until(lambda: len(rig.checkpoints.saved) == 2)
        assert not run.done()

    assert [c.sequence_number for c in rig.checkpoints.saved] == [seq(first[-1]), seq(second[-1])]


@pytest.mark.timeout(30)
async def test_a_slow_write_holds_back_only_its_key_not_the_next_batch(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    slow = stream.insert(key("slow"), {"version": 1})
    writer = rig.writer(EU)
    writer.hold({"pk": {"S": "slow"}})
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(lambda: writer.held == 1)
        update = stream.insert(key("slow"), {"version": 2})
        others = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(3)]
        # The next batch is applied while the slow write is in flight, except its key,
        # which waits for the older write; nothing is checkpointed past the slow batch.
        await rig.until(lambda: {w.sequence_number for w in writer.writes} == set(map(seq, others)))
        assert rig.checkpoints.saved == []
        writer.release()
        await rig.until(rig.checkpointed(SHARD, seq(others[-1])))

    assert writer.sequences_by_key()[ikey("slow")] == [int(seq(slow)), int(seq(update))]
    assert [c.sequence_number for c in rig.checkpoints.saved] == [seq(slow), seq(others[-1])]
    assert writer.state() == rig.expected([slow, update, *others])


@pytest.mark.timeout(30)
async def test_small_batches_behind_a_slow_write_are_applied_as_they_arrive(
    rig: Rig, metrics: Metrics
) -> None:
    # Steady load: one small batch after another while an older write is slow. Each is
    # written as it arrives, not once the slow write's batch is done (that wait was
    # most of the lag on a slow target), as long as the lane has a place for them.
    behind = LANE_WINDOW - 1
    stream = rig.stream
    slow = stream.insert(key("slow"), {"version": 1})
    writer = rig.writer(EU)
    writer.hold({"pk": {"S": "slow"}})
    later: list[dict[str, Any]] = []
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(lambda: writer.held == 1)
        for i in range(behind):
            later.append(stream.insert(key(f"k{i}"), {"version": 1}))
            await rig.until(lambda: len(writer.writes) == len(later))
        assert rig.checkpoints.saved == [], "nothing is checkpointed past the slow write"
        writer.release()
        await rig.until(rig.checkpointed(SHARD, seq(later[-1])))

    assert writer.state() == rig.expected([slow, *later])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("then", ["update", "remove"])
async def test_writes_of_a_key_queued_behind_its_slow_write_are_coalesced_not_across_a_remove(
    rig: Rig, metrics: Metrics, then: str
) -> None:
    # A key written in every batch (the heartbeat) while its write is slow: the batches
    # behind it would each queue one more write of it, and its lag grew by a round trip
    # per batch. A waiting write followed by another live write is coalesced into it.
    stream = rig.stream
    hot = key("hot")
    first = stream.insert(hot, {"version": 1})
    writer = rig.writer(EU)
    writer.hold({"pk": {"S": "hot"}})
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(lambda: writer.held == 1)
        queued = [
            stream.modify(hot, {"version": 1}, {"version": 2}),
            stream.insert(key("m2"), {"version": 1}),
        ]
        await rig.until(lambda: len(writer.writes) == 1)  # m2: the batch is being applied
        if then == "update":
            last = stream.modify(hot, {"version": 2}, {"version": 3})
        else:
            last = stream.remove(hot, {"version": 2})
        marker = stream.insert(key("m3"), {"version": 1})
        await rig.until(lambda: len(writer.writes) == 2)
        writer.release()
        await rig.until(rig.checkpointed(SHARD, seq(marker)))

    written = writer.sequences_by_key()[ikey("hot")]
    if then == "update":
        assert written == [int(seq(first)), int(seq(last))]
    else:
        assert written == [int(seq(first)), int(seq(queued[0])), int(seq(last))]
    assert writer.state() == rig.expected([first, *queued, last, marker])


@pytest.mark.timeout(30)
async def test_checkpoints_are_saved_at_most_once_per_interval_and_the_last_at_stop(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    writer = rig.writer(EU)
    records: list[dict[str, Any]] = []
    pipeline = rig.pipeline(metrics, checkpoint_interval=3600)
    async with rig.running(pipeline) as run:
        for i in range(5):  # one batch each
            records.append(stream.insert(key(f"k{i}"), {"version": 1}))
            await rig.until(lambda: len(writer.writes) == len(records))
        # The first batch's checkpoint is saved (its put may land after the later writes);
        # the next ones wait for the interval.
        await rig.until(lambda: bool(rig.checkpoints.saved))
        assert [c.sequence_number for c in rig.checkpoints.saved] == [seq(records[0])]
        pipeline.stop.set()
        async with asyncio.timeout(STOP_TIMEOUT):
            await run

    assert [c.sequence_number for c in rig.checkpoints.saved] == [seq(r) for r in records[::4]]
    stored = await rig.checkpoints.load(stream.table)
    assert stored[(SHARD, EU)].sequence_number == seq(records[-1])


@pytest.mark.timeout(30)
async def test_a_lane_that_goes_quiet_saves_its_checkpoint_once_the_interval_passed(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    writer = rig.writer(EU)
    first = stream.insert(key("a"), {"version": 1})
    async with rig.running(rig.pipeline(metrics, checkpoint_interval=0.05)):
        await rig.until(rig.checkpointed(SHARD, seq(first)))
        second = stream.insert(key("b"), {"version": 1})
        # Nothing else arrives: the timer, not a later batch or the stop, saves it.
        await rig.until(rig.checkpointed(SHARD, seq(second)))
        assert len(writer.writes) == 2


# -- 6. graceful stop -------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_stop_drains_the_batch_in_flight_checkpoints_it_and_reads_no_more(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(5)]
    writer = rig.writer(EU)
    writer.hold()
    pipeline = rig.pipeline(metrics)
    async with rig.running(pipeline) as run:
        await rig.until(lambda: writer.held == len(records))
        pipeline.stop.set()
        unread = [stream.insert(key(f"late{i}"), {"version": 1}) for i in range(3)]
        writer.release()
        async with asyncio.timeout(STOP_TIMEOUT):
            await run

    assert [w.sequence_number for w in writer.writes] == [seq(r) for r in records]
    assert not {seq(r) for r in unread} & {w.sequence_number for w in writer.writes}
    assert rig.checkpoints.latest(SHARD, EU) == Checkpoint(
        SHARD, EU, seq(records[-1]), False, rig.stream.arn
    )
    stored = await rig.checkpoints.load(stream.table)
    assert stored[(SHARD, EU)].sequence_number == seq(records[-1])


@pytest.mark.timeout(30)
async def test_stop_while_writes_are_throttled_and_lanes_are_full_returns_without_checkpoint(
    rig: Rig, new_metrics: Callable[[], Metrics]
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(8)]
    writer = rig.writer(EU)
    writer.fail_all(ThrottledError("slow down", code="ThrottlingException"))
    # One record per batch: batch 1 retries forever, 2..5 fill the lane, the reader
    # waits to queue batch 6. Shutdown must still drain and return.
    metrics = new_metrics()
    async with rig.running(rig.pipeline(metrics, records_per_call=1)):
        # Every retry notifies, so this is re-checked until batch 6 is read and decoded.
        await rig.until(
            lambda: (
                metrics.total("records_read") >= QUEUED_BATCHES_PER_LANE + 2
                and writer.attempts >= 3
            )
        )

    assert writer.writes == []
    assert rig.checkpoints.saved == []

    writer.heal()
    async with rig.running(rig.pipeline(new_metrics())):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))
    assert writer.state() == rig.expected(records)


# -- 7. restart from checkpoint ---------------------------------------------------------


@pytest.mark.timeout(30)
async def test_restart_reads_only_past_the_checkpoint(
    rig: Rig, new_metrics: Callable[[], Metrics]
) -> None:
    stream = rig.stream
    first = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(4)]
    writer = rig.writer(EU)
    async with rig.running(rig.pipeline(new_metrics())):
        await rig.until(rig.checkpointed(SHARD, seq(first[-1])))

    second = [
        stream.modify(key("k0"), {"version": 1}, {"version": 2}),
        stream.insert(key("k9"), {"version": 1}),
        stream.remove(key("k1"), {"version": 1}),
    ]
    writes_before = len(writer.writes)
    # A fresh process: a new pipeline whose positions come only from the control table.
    rig.restart_checkpoints()
    metrics = new_metrics()
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(rig.checkpointed(SHARD, seq(second[-1])))

    assert metrics.total("records_read") == len(second)
    assert [w.sequence_number for w in writer.writes[writes_before:]] == [seq(r) for r in second]
    assert writer.state() == rig.expected(first + second)


@pytest.mark.timeout(30)
async def test_restart_after_an_interrupted_batch_redelivers_it_as_duplicates(
    rig: Rig, new_metrics: Callable[[], Metrics]
) -> None:
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(5)]
    writer = rig.writer(EU)
    writer.fail_all(ThrottledError("slow down", code="ThrottlingException"), after=2)
    async with rig.running(rig.pipeline(new_metrics(), max_concurrency=1)):
        await rig.until(lambda: len(writer.writes) == 2 and writer.attempts >= 4)
    assert rig.checkpoints.saved == [], "a half-applied batch must not be checkpointed"

    writer.heal()
    metrics = new_metrics()
    async with rig.running(rig.pipeline(metrics, max_concurrency=1)):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))

    assert metrics.total(Outcome.DUPLICATE.value) == 2
    assert metrics.total(Outcome.APPLIED.value) == 3
    assert writer.state() == rig.expected(records)


# -- 8. duplicate delivery --------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_duplicate_delivery_is_counted_and_changes_nothing(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    first = [
        stream.insert(key("a"), {"version": 1}),
        stream.insert(key("b"), {"version": 1}),
        stream.modify(key("a"), {"version": 1}, {"version": 2}),
        stream.remove(key("b"), {"version": 1}),
    ]
    writer = rig.writer(EU)
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(rig.checkpointed(SHARD, seq(first[-1])))
        assert stream.duplicate(SHARD, seq(first[0]), seq(first[-1])) == 4
        second = [stream.modify(key("a"), {"version": 2}, {"version": 3})]
        await rig.until(rig.checkpointed(SHARD, seq(second[-1])))

    assert metrics.total("records_read") == len(first) * 2 + len(second)
    assert metrics.total(Outcome.DUPLICATE.value) == len(first)
    written = [w.sequence_number for w in writer.writes]
    assert len(written) == len(set(written)), "a redelivered record was written again"
    assert metrics.total(Outcome.APPLIED.value) == len(writer.applied())
    assert writer.state() == rig.expected(first + second)
    assert versions(writer.state()) == {"a": (3, False), "b": (1, True)}


@pytest.mark.timeout(30)
async def test_a_range_delivered_again_while_still_in_flight_is_not_written_twice(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    first = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(3)]
    writer = rig.writer(EU)
    writer.hold()
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(lambda: writer.held == len(first))
        # The stream repeats the range before the lane has applied (or checkpointed) it.
        assert stream.duplicate(SHARD, seq(first[0]), seq(first[-1])) == len(first)
        # Counting is not an event of the fakes: re-check at each of the reader's polls.
        stream.before_get_records = lambda _: rig.signal.notify()
        await rig.until(lambda: metrics.total(Outcome.DUPLICATE.value) == len(first))
        writer.release()
        await rig.until(rig.checkpointed(SHARD, seq(first[-1])))

    assert [w.sequence_number for w in writer.writes] == [seq(r) for r in first]
    assert metrics.total(Outcome.APPLIED.value) == len(first)


@pytest.mark.timeout(30)
async def test_duplicates_are_counted_per_lane_and_the_local_tombstone_lane_counts_its_own(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    local = TargetRef(HERE, stream.table)
    first = [
        stream.insert(key("a"), {"version": 1}),
        stream.insert(key("b"), {"version": 1}),
        stream.modify(key("a"), {"version": 1}, {"version": 2}),
        stream.remove(key("b"), {"version": 1}),
    ]
    remote = rig.writer(EU, mode=Mode.ACTIVE_ACTIVE)
    tombstones = rig.writer(local, mode=Mode.ACTIVE_ACTIVE)
    pipeline = rig.pipeline(metrics, targets=(EU, local), local_target=local)
    async with rig.running(pipeline):
        await rig.until(rig.checkpointed(SHARD, seq(first[-1]), EU, local))
        stream.duplicate(SHARD, seq(first[0]), seq(first[-1]))
        later = stream.insert(key("c"), {"version": 1})
        await rig.until(rig.checkpointed(SHARD, seq(later), EU, local))

    duplicates = {p["target"]: p["duplicate"] for p in metrics.status()["pairs"]}
    # The local lane only ever takes this region's deletes: one of the four replayed.
    assert duplicates == {str(EU): len(first), str(local): 1}
    assert versions(tombstones.state()) == {"b": (1, True)}
    assert remote.state() == rig.expected([*first, later], EU, Mode.ACTIVE_ACTIVE)


# -- 9. a slow target -------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_a_slow_target_neither_holds_back_the_other_checkpoint_nor_grows_memory(
    rig: Rig, metrics: Metrics
) -> None:
    # The slow lane holds the LANE_WINDOW batches it applies at once, and
    # QUEUED_BATCHES_PER_LANE more are queued; the decoder has one more in hand. Read
    # ahead of it: READ_AHEAD_PAGES waiting and one in the fetcher's hand.
    delivered = LANE_WINDOW + QUEUED_BATCHES_PER_LANE + 1
    bound = delivered + READ_AHEAD_PAGES + 1
    stream = rig.stream
    records = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(bound + 4)]
    fast, slow = rig.writer(EU), rig.writer(AP)
    slow.hold()
    pipeline = rig.pipeline(metrics, targets=(EU, AP), records_per_call=1)
    async with rig.running(pipeline):
        await rig.until(lambda: slow.held == LANE_WINDOW)
        # By then the fast target has applied and checkpointed those batches on its own.
        await rig.until(rig.checkpointed(SHARD, seq(records[delivered - 2]), EU))
        stored = await rig.checkpoints.load(stream.table)
        assert (SHARD, AP) not in stored
        fast_position = stored[(SHARD, EU)].sequence_number
        assert fast_position is not None
        assert int(fast_position) >= int(seq(records[delivered - 2]))
        # The reader now waits for room in the slow lane rather than buffering ahead.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.wait_for_get_records(bound + 1), timeout=0.3)
        assert metrics.total("records_read") <= delivered
        assert len(fast.writes) <= delivered

        slow.release()
        await rig.until(rig.checkpointed(SHARD, seq(records[-1]), EU, AP))

    for target in (EU, AP):
        assert rig.writers[target].state() == rig.expected(records, target)


# -- 10. order per key, parallel across keys --------------------------------------------


@pytest.mark.timeout(30)
async def test_writes_are_serial_per_key_in_stream_order_and_parallel_across_keys(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    records = history(stream, [f"key{i}" for i in range(8)], rounds=9)
    writer = rig.writer(EU, turns=3)
    async with rig.running(rig.pipeline(metrics, max_concurrency=3, records_per_call=20)):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))

    assert writer.same_key_overlaps == 0, "two writes to one key were in flight together"
    per_key = writer.sequences_by_key()
    assert any(len(written) > 4 for written in per_key.values())
    for written in per_key.values():
        assert written == sorted(written), "a key was written out of stream order"
    assert 1 < writer.max_in_flight <= 3
    assert writer.state() == rig.expected(records)
