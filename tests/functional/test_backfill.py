"""Backfill copies what the stream never saw, through the conflict rule, and resumes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.config.schema import Config, load_config
from replicator.models import Outcome, pad_seq
from replicator.tools.backfill import backfill
from replicator.tools.progress import ProgressStore
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, create_tables, write_config
from tests.functional.test_verify_at_scale import batch_put
from tests.records import image

pytestmark = pytest.mark.timeout(120)


class Interrupted(Exception):
    """Stands for the process dying between two pages."""


class Recorder:
    """A backfill view that keeps what it was told; it can stop the run after some pages."""

    def __init__(self, stop_after_pages: int | None = None) -> None:
        self.notes: list[str] = []
        self.pages = 0
        self.total: int | None = None
        self.done_before = 0
        self._stop_after = stop_after_pages

    def started(self, source_table: str, *, total: int | None, done: int) -> None:
        self.total, self.done_before = total, done

    def advance(self, items: int) -> None:
        self.pages += 1
        if self._stop_after is not None and self.pages >= self._stop_after:
            raise Interrupted

    def note(self, text: str) -> None:
        self.notes.append(text)


@pytest.fixture
async def seeded(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> AsyncIterator[tuple[Config, Clients]]:
    config = load_config(write_config(tmp_path / "replicator.yaml", endpoints, unique_name))
    await create_tables(config)
    clients = Clients(config.endpoints)
    await batch_put(
        await clients.json("dynamodb", SOURCE),
        unique_name,
        [image(f"k{n:04}", 4, note="before the stream") for n in range(400)],
    )
    try:
        yield config, clients
    finally:
        await clients.aclose()


async def test_an_older_scan_read_never_beats_a_newer_stream_write(
    seeded: tuple[Config, Clients], unique_name: str
) -> None:
    config, clients = seeded
    target = await clients.json("dynamodb", TARGET)
    # The stream delivered v5 of k0007 after the scan read v4 (the source's state here).
    newer = {**image("k0007", 5, origin=SOURCE, note="stream"), "_rep_seq": {"S": pad_seq("9")}}
    await target.put_item(TableName=unique_name, Item=newer)
    await (await clients.json("dynamodb", SOURCE)).put_item(
        TableName=unique_name, Item={"pk": {"S": "no-version"}}
    )

    summary = await backfill(config, Recorder(), segments=4, page_items=50)

    assert summary.scanned == 401
    assert summary.outcomes[Outcome.APPLIED] == 399
    assert summary.outcomes[Outcome.SUPERSEDED] == 1
    assert summary.outcomes[Outcome.DEAD_LETTERED] == 1
    kept = await target.get_item(TableName=unique_name, Key={"pk": {"S": "k0007"}})
    assert kept["Item"]["version"] == {"N": "5"}
    assert kept["Item"]["note"] == {"S": "stream"}
    await (await clients.json("dynamodb", SOURCE)).delete_item(
        TableName=unique_name, Key={"pk": {"S": "no-version"}}
    )
    report = await verify(config, recheck_delay=0.01)
    assert [(d.kind, d.key[0][2]) for d in report.differences] == [("stale", "k0007")]


async def test_an_interrupted_backfill_resumes_from_each_segments_saved_position(
    seeded: tuple[Config, Clients], unique_name: str
) -> None:
    config, clients = seeded
    with pytest.raises(ExceptionGroup) as stopped:
        await backfill(config, Recorder(stop_after_pages=3), segments=4, page_items=25)
    assert stopped.group_contains(Interrupted)
    saved = await ProgressStore(await clients.json("dynamodb", SOURCE), config.control_table).load(
        unique_name
    )
    assert 0 < sum(p.scanned for p in saved) < 400

    again = Recorder()
    summary = await backfill(config, again, segments=4, page_items=25)
    assert again.notes and again.notes[0].startswith(f"resumed the backfill of {unique_name}")
    assert again.done_before == sum(p.scanned for p in saved)
    assert summary.resumed
    assert summary.scanned == 400
    # Only pages after the saved positions were read again.
    assert again.pages * 25 <= 400 - again.done_before + 4 * 25
    assert (await verify(config, recheck_delay=0.01)).differences == []

    fresh = Recorder()
    await backfill(config, fresh, segments=2, page_items=100)  # the last run finished
    assert fresh.notes == []
    assert fresh.done_before == 0
