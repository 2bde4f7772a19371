"""The conflict table of DESIGN §3 (``tests/conflict_cases.py``) through the Lambda handler.

Each case's stored item is put into a real target table; the incoming write arrives
as the event source mapping delivers a stream record of its origin region, and the
handler applies it with the same code as the container pipeline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import parse_config
from replicator.lambda_mode.function import LambdaFunction
from replicator.models import Incoming, Outcome, WireItem, stored_from_item
from tests.conflict_cases import CASES, META, Case
from tests.esm_driver import Context, shape
from tests.records import record

KEY_SCHEMA = [("pk", "HASH", "S")]
KEYS: WireItem = {"pk": {"S": "k"}}


def stream_record(incoming: Incoming) -> dict[str, Any]:
    """The origin's stream record whose change is ``incoming``."""
    seq = int(incoming.seq)
    image: WireItem = {**KEYS, META.version: {"N": str(incoming.version)}}
    if incoming.tombstone:
        return record("REMOVE", seq, old=image)
    new = {**image, "payload": {"S": "incoming"}}
    if incoming.recreate:
        return record("INSERT", seq, new=new)
    return record("MODIFY", seq, new=new, old=image)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_the_handler_follows_the_conflict_table(
    case: Case, endpoints: dict[str, str], unique_name: str
) -> None:
    origin, source, target = case.incoming.origin, f"{unique_name}-src", f"{unique_name}-dst"
    config = parse_config(
        {
            "source_region": origin,
            "mode": case.mode.value,
            "endpoints": endpoints,
            "dlq_table": f"{unique_name}-dlq",
            "pairs": [
                {"source_table": source, "targets": [{"region": case.here, "table": target}]}
            ],
            "web": {"enabled": False},
        }
    )
    arn = f"arn:aws:dynamodb:{origin}:123456789012:table/{source}/stream/2026-01-01T00:00:00.000"
    before = None if case.stored is None else {**KEYS, **case.stored}
    clients = Clients(endpoints)
    try:
        target_db = await clients.json("dynamodb", case.here)
        # The source table takes this region's own tombstones in active-active mode.
        await ensure_table(await clients.json("dynamodb", origin), source, KEY_SCHEMA)
        await ensure_table(target_db, target, KEY_SCHEMA)
        if before is not None:
            await target_db.put_item(TableName=target, Item=before)
        function = LambdaFunction(config)
        try:
            event = {"Records": [shape(stream_record(case.incoming), arn)]}
            response = await asyncio.to_thread(function, event, Context(timeout_seconds=30))
        finally:
            await asyncio.to_thread(function.close)
        got = await target_db.get_item(TableName=target, Key=KEYS, ConsistentRead=True)
    finally:
        await clients.aclose()

    assert response == {"batchItemFailures": []}
    [pair] = [
        p for p in function.metrics.status()["pairs"] if p["target"] == f"{case.here}/{target}"
    ]
    assert {o.value: pair[o.value] for o in Outcome if pair[o.value]} == {case.expected.value: 1}
    assert function.metrics.total("version_regressions") == int(case.version_regression)
    after = got.get("Item")
    if case.expected is not Outcome.APPLIED:
        assert after == before
        return
    stored = stored_from_item(after, META)
    assert stored is not None and stored.replicated
    incoming = case.incoming
    assert (stored.version, stored.tombstone, stored.rep_origin, stored.seq) == (
        incoming.version,
        incoming.tombstone,
        origin,
        incoming.seq,
    )
