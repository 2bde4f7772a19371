"""Rule K applied by DynamoDB itself (DESIGN §4c): the conditional PutItem and the pure
function agree on moto, ties included (settled by a strongly consistent read of the
source table); active-active Kinesis writes agree with §3 without the fence."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply.rule import visible
from replicator.apply.rulek import RESOLVED, TIE, decide_k, judge
from replicator.apply.ties import SourceReads
from replicator.apply.writer import ConditionalWriter, target_item
from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.models import Incoming, Mode, Outcome, WireItem, stored_from_item
from tests.conflict_cases import META, A, B, kinesis_item, local
from tests.functional.test_conditional_write import (
    KEY_SCHEMA,
    NOW,
    TOMBSTONE_TTL_SECONDS,
    TablePerRegion,
    change_of,
    stored_states,
)

SOURCE, TARGET = A, B  # one-way: the source region is every incoming write's origin
versions = st.integers(0, 4)
timestamps = st.integers(1, 4)
events = st.sampled_from(["e1", "e2"])

stored_k = st.one_of(
    st.none(),
    st.builds(local, st.none() | versions),  # written locally, or backfilled: no _rep_ts
    st.builds(
        kinesis_item,
        versions,
        timestamps,
        st.sampled_from(["e1", "e2", RESOLVED]),
        tombstone=st.booleans(),
    ),
)
incoming_k = st.builds(
    lambda version, ts, event, tombstone: Incoming(
        Decimal(version), tombstone, SOURCE, "", ts=ts, event_id=event
    ),
    versions,
    timestamps,
    events,
    st.booleans(),
)
source_items = st.none() | st.builds(
    lambda v: {"version": {"N": str(v)}, "note": {"S": "src"}}, versions
)


class SourceAndTarget:
    """A source table and a target table on moto, driven from one event loop we own."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self.clients = Clients(endpoints)
        self.table = f"k-{uuid.uuid4().hex[:12]}"
        self.reads = 0
        self.run(self._create())

    def run(self, coro: Any) -> Any:
        return self._runner.run(coro)

    async def _create(self) -> None:
        for region in (SOURCE, TARGET):
            await ensure_table(await self.clients.json("dynamodb", region), self.table, KEY_SCHEMA)

    def _read(self) -> None:
        self.reads += 1

    async def put(
        self, stored: WireItem | None, incoming: Incoming, source: WireItem | None
    ) -> tuple[Outcome, WireItem | None, WireItem | None, Any]:
        keys: WireItem = {"pk": {"S": uuid.uuid4().hex}}
        source_client = await self.clients.json("dynamodb", SOURCE)
        target_client = await self.clients.json("dynamodb", TARGET)
        if source is not None:
            await source_client.put_item(TableName=self.table, Item={**keys, **source})
        before = None if stored is None else {**keys, **stored}
        if before is not None:
            await target_client.put_item(TableName=self.table, Item=before)
        writer = ConditionalWriter(
            await self.clients.put_client(TARGET),
            self.table,
            region=TARGET,
            meta=META,
            mode=Mode.ONE_WAY,
            tombstone_ttl_seconds=TOMBSTONE_TTL_SECONDS,
            source_items=SourceReads(source_client, self.table, on_read=self._read),
        )
        change = change_of(keys, incoming)
        outcome = await writer.put(change, now=NOW)
        answer = await target_client.get_item(TableName=self.table, Key=keys, ConsistentRead=True)
        source_now = None if source is None else {**keys, **source}
        return outcome, before, answer.get("Item"), (change, source_now)

    def close(self) -> None:
        async def drop() -> None:
            try:
                for region in (SOURCE, TARGET):
                    client = await self.clients.json("dynamodb", region)
                    await client.call("DeleteTable", {"TableName": self.table})
            finally:
                await self.clients.aclose()

        try:
            self.run(drop())
        finally:
            self._runner.close()


@pytest.fixture(scope="module")
def pair_tables(endpoints: dict[str, str]) -> Iterator[SourceAndTarget]:
    tables = SourceAndTarget(endpoints)
    try:
        yield tables
    finally:
        tables.close()


@pytest.fixture(scope="module")
def tables(endpoints: dict[str, str]) -> Iterator[TablePerRegion]:
    tables = TablePerRegion(endpoints)
    try:
        yield tables
    finally:
        tables.close()


def written(change: Any) -> WireItem:
    return target_item(change, meta=META, expires_at=int(NOW) + TOMBSTONE_TTL_SECONDS)


@pytest.mark.timeout(300)
@settings(max_examples=200, deadline=None)
@given(stored=stored_k, incoming=incoming_k, source=source_items)
def test_rule_k_condition_and_pure_function_agree(
    pair_tables: SourceAndTarget,
    stored: WireItem | None,
    incoming: Incoming,
    source: WireItem | None,
) -> None:
    expected = decide_k(stored_from_item(stored, META), incoming)
    reads = pair_tables.reads

    outcome, before, after, (change, source_now) = pair_tables.run(
        pair_tables.put(stored, incoming, source)
    )

    if expected is TIE:
        # The source's state at the tie's ts, stamped resolved: the live item, or a
        # tombstone at the stored version when the source item is gone.
        assert outcome is Outcome.APPLIED
        assert after is not None and before is not None
        assert visible(after, META) == visible(source_now, META)
        assert (after[META.ts], after[META.event]) == ({"N": str(incoming.ts)}, {"S": RESOLVED})
        if source_now is None:
            assert after[META.version] == before[META.version]
        assert pair_tables.reads == reads + 1
        return
    assert outcome is expected
    assert after == (written(change) if expected is Outcome.APPLIED else before)
    assert pair_tables.reads == reads  # no read unless tied


aa_incoming = st.builds(
    lambda version, tombstone, origin: Incoming(
        Decimal(version), tombstone, origin, "", ts=1, event_id="e1"
    ),
    versions,
    st.booleans(),
    st.sampled_from([A, B]),
)


@pytest.mark.timeout(300)
@settings(max_examples=200, deadline=None)
@given(stored=stored_states, incoming=aa_incoming, here=st.sampled_from([A, B]))
def test_active_active_kinesis_condition_and_pure_rule_agree(
    tables: TablePerRegion, stored: WireItem | None, incoming: Incoming, here: str
) -> None:
    expected = judge(stored_from_item(stored, META), incoming, here=here, mode=Mode.ACTIVE_ACTIVE)

    outcome, before, after, written_item = tables.run(
        tables.put(here, Mode.ACTIVE_ACTIVE, stored, incoming)
    )

    assert outcome is expected
    assert after == (written_item if expected is Outcome.APPLIED else before)
