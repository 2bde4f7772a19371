"""The conflict rule applied by DynamoDB itself: ``ConditionalWriter.put`` on moto.

Every row of DESIGN §3 (``tests/conflict_cases.py``) is written into a real table,
and a property test proves that the condition expression and the pure function
``decide`` agree on random stored states and incoming writes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply.rule import decide
from replicator.apply.writer import ConditionalWriter, target_item
from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.models import (
    Change,
    Incoming,
    Mode,
    Outcome,
    WireItem,
    stored_from_item,
)
from tests.conflict_cases import CASES, META, A, B, C, Case, local, replicated, seq

NOW = 1_700_000_000.0
TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600
KEY_SCHEMA = [("pk", "HASH", "S")]


def change_of(keys: WireItem, incoming: Incoming) -> Change:
    """The change the pipeline would hand the writer for ``incoming``."""
    item = None
    if not incoming.tombstone:
        item = {**keys, META.version: {"N": str(incoming.version)}, "payload": {"S": "incoming"}}
    return Change(
        keys=keys,
        incoming=incoming,
        item=item,
        sequence_number=incoming.seq.lstrip("0"),
        created_at=NOW,
        record={},
    )


async def seed_and_put(
    client: Any,
    table: str,
    *,
    here: str,
    mode: Mode,
    stored: WireItem | None,
    incoming: Incoming,
    write_client: Any,
) -> tuple[Outcome, WireItem | None, WireItem | None, WireItem]:
    """Seed ``stored`` with a plain PutItem, then put ``incoming`` through the writer.

    Returns the outcome, the item before and after, and the item a write would leave.
    """
    keys: WireItem = {"pk": {"S": uuid.uuid4().hex}}
    before = None if stored is None else {**keys, **stored}
    if before is not None:
        await client.put_item(TableName=table, Item=before)
    writer = ConditionalWriter(
        write_client,
        table,
        region=here,
        meta=META,
        mode=mode,
        tombstone_ttl_seconds=TOMBSTONE_TTL_SECONDS,
    )
    change = change_of(keys, incoming)
    outcome = await writer.put(change, now=NOW)
    response = await client.get_item(TableName=table, Key=keys, ConsistentRead=True)
    written = target_item(change, meta=META, expires_at=int(NOW) + TOMBSTONE_TTL_SECONDS)
    return outcome, before, response.get("Item"), written


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_conditional_write_follows_the_conflict_table(
    case: Case, endpoints: dict[str, str], unique_name: str
) -> None:
    factory = Clients(endpoints)
    try:
        client = await factory.json("dynamodb", case.here)
        write_client = await factory.put_client(case.here)
        await ensure_table(client, unique_name, KEY_SCHEMA)
        try:
            outcome, before, after, written = await seed_and_put(
                client,
                unique_name,
                here=case.here,
                mode=case.mode,
                stored=case.stored,
                incoming=case.incoming,
                write_client=write_client,
            )
        finally:
            await client.call("DeleteTable", {"TableName": unique_name})
    finally:
        await factory.aclose()

    assert outcome is case.expected
    assert after == (written if case.expected is Outcome.APPLIED else before)


# --- property: the condition expression and the pure rule agree -------------------

regions = st.sampled_from([A, B, C])
versions = st.integers(0, 4)
seq_numbers = st.integers(1, 5)

stored_states = st.one_of(
    st.none(),
    # written locally by the application, with or without a (numeric) version
    st.builds(local, st.none() | versions),
    st.builds(local, versions, version_type=st.just("S")),
    # written by the replicator: live or tombstone
    st.builds(replicated, versions, regions, seq_no=seq_numbers, tombstone=st.booleans()),
    # written by the replicator, then changed locally (the version went up); a
    # tombstone changed by an UpdateItem keeps _rep_deleted: a zombie (DESIGN §4 rule 7)
    st.builds(
        lambda version, origin, seq_no, bump, tombstone: replicated(
            version, origin, seq_no=seq_no, local_version=version + bump, tombstone=tombstone
        ),
        versions,
        regions,
        seq_numbers,
        st.integers(1, 2),
        st.booleans(),
    ),
)


@st.composite
def incoming_writes(draw: st.DrawFn) -> Incoming:
    tombstone = draw(st.booleans())
    return Incoming(
        version=Decimal(draw(versions)),
        tombstone=tombstone,
        origin=draw(regions),
        seq=seq(draw(seq_numbers)),
        recreate=not tombstone and draw(st.booleans()),  # a REMOVE is never a re-create
    )


class TablePerRegion:
    """One table in each region's moto server, driven from one event loop we own."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self._clients = Clients(endpoints)
        self._table = f"t-{uuid.uuid4().hex[:12]}"
        self._regions = (A, B, C)
        self.run(self._create())

    def run(self, coro: Any) -> Any:
        return self._runner.run(coro)

    async def _create(self) -> None:
        for region in self._regions:
            client = await self._clients.json("dynamodb", region)
            await ensure_table(client, self._table, KEY_SCHEMA)

    async def put(
        self, here: str, mode: Mode, stored: WireItem | None, incoming: Incoming
    ) -> tuple[Outcome, WireItem | None, WireItem | None, WireItem]:
        client = await self._clients.json("dynamodb", here)
        return await seed_and_put(
            client,
            self._table,
            here=here,
            mode=mode,
            stored=stored,
            incoming=incoming,
            write_client=await self._clients.put_client(here),
        )

    async def _drop(self) -> None:
        try:
            for region in self._regions:
                client = await self._clients.json("dynamodb", region)
                await client.call("DeleteTable", {"TableName": self._table})
        finally:
            await self._clients.aclose()

    def close(self) -> None:
        try:
            self.run(self._drop())
        finally:
            self._runner.close()


@pytest.fixture(scope="module")
def tables(endpoints: dict[str, str]) -> Iterator[TablePerRegion]:
    tables = TablePerRegion(endpoints)
    try:
        yield tables
    finally:
        tables.close()


@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None)
@given(
    stored=stored_states,
    incoming=incoming_writes(),
    mode=st.sampled_from(Mode),
    here=regions,
)
def test_the_condition_expression_and_the_pure_rule_agree(
    tables: TablePerRegion,
    stored: WireItem | None,
    incoming: Incoming,
    mode: Mode,
    here: str,
) -> None:
    expected = decide(stored_from_item(stored, META), incoming, here=here, mode=mode)

    outcome, before, after, written = tables.run(tables.put(here, mode, stored, incoming))

    assert outcome is expected
    assert after == (written if expected is Outcome.APPLIED else before)
