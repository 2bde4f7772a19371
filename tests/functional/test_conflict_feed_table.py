"""The conflicts table itself (DESIGN §4b): redeliveries collapse, an entry fits in 400 KB,
Lambda mode records like container mode, and one-way mode pays nothing."""

from __future__ import annotations

import asyncio
import base64
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from replicator.apply.conflict import Loss, Side
from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import parse_config
from replicator.lambda_mode.function import LambdaFunction
from replicator.models import Change, Incoming, TargetRef
from replicator.pipeline.conflicts import ConflictFeed
from replicator.pipeline.itemsize import MAX_ITEM_BYTES, item_size
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from replicator.tools.status import render_status
from tests.e2e.helpers import cli, wait_until
from tests.esm_driver import Context, shape
from tests.functional.test_conflict_feed import REGIONS, scan
from tests.functional.test_lambda_emf import emf_documents
from tests.mesh import A, C
from tests.records import record

pytestmark = pytest.mark.timeout(60)


async def test_the_lambda_handler_records_a_loss_once(
    endpoints: dict[str, str], unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lambda mode: C's write delivered by the event source mapping lands on A's own write;
    the mapping delivers it again; the feed holds one entry."""
    source, target = f"{unique_name}-src", f"{unique_name}-dst"
    config = parse_config(
        {
            "source_region": C,
            "mode": "active-active",
            "endpoints": endpoints,
            "dlq_table": f"{unique_name}-dlq",
            "conflicts_table": f"{unique_name}-conflicts",
            "pairs": [{"source_table": source, "targets": [{"region": A, "table": target}]}],
            "web": {"enabled": False},
        }
    )
    arn = f"arn:aws:dynamodb:{C}:123456789012:table/{source}/stream/2026-01-01T00:00:00.000"
    keys = {"pk": {"S": "k"}}
    written = {**keys, "version": {"N": "1"}, "v": {"S": f"from {C}"}}
    event = {"Records": [shape(record("INSERT", 100, new=written), arn)]}
    clients = Clients(endpoints)
    try:
        await ensure_table(await clients.json("dynamodb", C), source, [("pk", "HASH", "S")])
        a = await clients.json("dynamodb", A)
        await ensure_table(a, target, [("pk", "HASH", "S")])
        local = {**keys, "version": {"N": "1"}, "v": {"S": f"from {A}"}}
        await a.put_item(TableName=target, Item=local)
        function = LambdaFunction(config)
        try:
            for _ in range(2):  # the second delivery is the mapping's retry
                answer = await asyncio.to_thread(function, event, Context(timeout_seconds=30))
                assert answer == {"batchItemFailures": []}
        finally:
            await asyncio.to_thread(function.close)
        (entry,) = await scan(clients, C, f"{unique_name}-conflicts")
        assert (entry["loser_origin"], entry["winner_origin"]) == ({"S": A}, {"S": C})
        assert entry["loser_image"]["M"]["v"] == {"S": f"from {A}"}
        assert entry["sequence_number"] == {"S": "100"}
        assert function.metrics.total("duplicate") == 1  # the second delivery met itself
        conflicts = [
            d
            for d in emf_documents(capsys.readouterr().out)
            if "Conflicts" in d and d.get("target") == f"{A}/{target}"
        ]
        assert [d["Conflicts"] for d in conflicts] == [[1.0]]  # for a CloudWatch alarm
    finally:
        await clients.aclose()


def loss(image: dict[str, Any]) -> tuple[Loss, Change]:
    keys = {"pk": {"S": "k"}}
    change = Change(
        keys=keys,
        incoming=Incoming(Decimal(2), False, C, "1".zfill(40)),
        item={**keys, **image},
        sequence_number="1",
        created_at=0.0,
        record={},
    )
    loser = Side(A, Decimal(2), False, {**keys, **image}, {A: Decimal(4)})
    winner = Side(C, Decimal(2), False, {**keys, **image}, {C: Decimal(4)})
    return Loss(loser, winner), change


async def test_a_redelivered_loss_collapses_and_a_huge_one_keeps_what_fits(
    endpoints: dict[str, str], unique_name: str
) -> None:
    clients = Clients(endpoints)
    try:
        db = await clients.json("dynamodb", C)  # as the service builds it
        await ensure_table(db, unique_name, CONTROL_KEY)
        metrics = Metrics()
        feed = ConflictFeed(db, unique_name, metrics=metrics)
        small = loss({"v": {"S": "first"}})
        await feed.record(*small, table="t", target=TargetRef(A, "t"))
        again = loss({"v": {"S": "second delivery"}})
        await feed.record(*again, table="t", target=TargetRef(A, "t"))
        (kept,) = await scan(clients, C, unique_name)
        assert kept["winner_image"]["M"]["v"] == {"S": "first"}  # the first winner stays

        # Two images of 250 KB of incompressible data each: only their digests fit.
        noise = random.Random(7)

        def blob() -> dict[str, str]:
            return {"B": base64.b64encode(noise.randbytes(250_000)).decode()}

        huge, change = loss({"blob": blob()})
        other = {"pk": {"S": "k"}, "blob": blob()}
        huge = Loss(
            Side(A, Decimal(3), False, huge.loser.image, huge.loser.kv),
            Side(C, Decimal(3), False, other, {}),
        )
        await feed.record(huge, change, table="t", target=TargetRef(A, "t"))
        entries = await scan(clients, C, unique_name)
        (big,) = [e for e in entries if e["sk"]["S"].startswith(f"{A}#3")]
        assert item_size(big) <= MAX_ITEM_BYTES
        assert big["images_omitted"] == {"BOOL": True}
        assert len(big["loser_image_sha256"]["S"]) == 64
        assert metrics.counts["conflicts_unrecorded"] == {}
    finally:
        await clients.aclose()


async def test_one_way_writes_no_kv_and_keeps_no_feed(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    clients = Clients(endpoints)
    config = parse_config(
        {
            "source_region": A,
            "endpoints": {r: endpoints[r] for r in REGIONS},
            "control_table": f"{unique_name}-control",
            "dlq_table": f"{unique_name}-dlq",
            "conflicts_table": f"{unique_name}-conflicts",
            "pairs": [
                {"source_table": unique_name, "targets": [{"region": C, "table": unique_name}]}
            ],
            "web": {"enabled": False},
            "heartbeat": {"enabled": False},
        }
    )
    stop = asyncio.Event()
    for region in REGIONS:
        db = await clients.json("dynamodb", region)
        await ensure_table(db, unique_name, [("pk", "HASH", "S")], stream=True)
    service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics_for(config)))
    try:
        a, c = await clients.json("dynamodb", A), await clients.json("dynamodb", C)
        await a.put_item(TableName=unique_name, Item={"pk": {"S": "k"}, "version": {"N": "1"}})

        async def arrived() -> dict[str, Any] | None:
            answer = await c.get_item(
                TableName=unique_name, Key={"pk": {"S": "k"}}, ConsistentRead=True
            )
            found: dict[str, Any] | None = answer.get("Item")
            return found

        async def replicated() -> bool:
            return await arrived() is not None

        await wait_until(replicated, within=30, what="the write to reach C")
        assert "_rep_kv" not in (await arrived() or {})
        tables = (await a.call("ListTables", {}))["TableNames"]
        assert f"{unique_name}-conflicts" not in tables
        config_path = tmp_path / "replicator.yaml"
        config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        refused = cli("conflicts", "list", "-c", str(config_path))
        assert refused.returncode == 2 and "mode is one-way" in refused.stderr
    finally:
        stop.set()
        await service
        await clients.aclose()


async def test_an_entry_that_cannot_be_written_is_counted_and_replication_goes_on(
    endpoints: dict[str, str], unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    clients = Clients(endpoints)
    try:
        metrics = Metrics()
        feed = ConflictFeed(
            await clients.json("dynamodb", C), f"{unique_name}-missing", metrics=metrics
        )
        await feed.record(*loss({"v": {"S": "lost"}}), table="t", target=TargetRef(A, "t"))
    finally:
        await clients.aclose()
    assert sum(metrics.counts["conflicts_unrecorded"].values()) == 1
    assert sum(metrics.counts["conflicts"].values()) == 1
    assert metrics.status()["conflicts"] == []  # the dashboard lists only entries kept
    assert "not recorded" in caplog.text
    metrics.shutdown()


def test_replicator_status_names_the_conflicts_in_active_active_mode_only() -> None:
    active = render_status({"service": {"mode": "active-active"}, "totals": {"conflicts": 3}})
    assert "conflicts 3 (replicator conflicts list)" in str(active[0])
    one_way = render_status({"service": {"mode": "one-way"}, "totals": {}})
    assert "conflicts" not in str(one_way[0])
