"""Benchmark 6: client CPU per conditional PutItem, SDK included.

The target is ``bench.stub`` in another process, answering ``{}`` at once, so the only
CPU counted (``time.process_time``) is this process's: on a real DynamoDB target this,
not the network, bounds writes per core. Write paths, same changes, same concurrency:

- the replicated write: ``ConditionalWriter.put`` over the client ``replicator run``
  gives it (``Clients.put_client`` where it exists, else aiobotocore): the goal's figure;
- the same behind ``TargetApplier`` (workers, metrics, lag): what the pipeline pays;
- ``ConditionalWriter.put`` over aiobotocore, and bare aiobotocore / aiodynamo calls
  with prebuilt arguments: each SDK's share alone.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import yarl

from bench.env import announced, credentials
from bench.fakes import META, TARGET, NullDeadLetters, synthetic_record
from bench.results import Goal, Result
from bench.ui import progress
from replicator.apply.applier import TargetApplier
from replicator.apply.condition import build_condition
from replicator.apply.writer import ConditionalWriter, target_item
from replicator.aws import Clients
from replicator.embedded import EMBEDDED_CREDENTIALS
from replicator.models import Change, Mode
from replicator.records import coalesce, to_change
from replicator.telemetry.metrics import Metrics

NAME = "6 SDK cost per write"
GOAL = Goal("<=", 250, "µs")
REGION = "eu-west-1"
SOURCE_REGION = "us-east-1"
TTL_SECONDS = 7 * 24 * 3600
WARMUP_WRITES = 100


def changes(count: int) -> list[Change]:
    """``count`` distinct-key changes (inserts, updates and deletes) from synthetic records."""
    rng = random.Random(6)
    found: list[Change] = []
    index = 0
    while len(found) < count:
        record = synthetic_record(index, keys=count * 10, rng=rng)
        index += 1
        change = to_change(record, here=SOURCE_REGION, meta=META)
        if isinstance(change, Change):
            found.append(change)
    return found


def request(change: Change, now: float) -> dict[str, Any]:
    """The PutItem request ``ConditionalWriter`` sends for ``change``, in wire format."""
    condition = build_condition(change.incoming, meta=META, here=REGION, mode=Mode.ONE_WAY)
    return {
        "TableName": TARGET.table,
        "Item": target_item(change, meta=META, expires_at=int(now) + TTL_SECONDS),
        "ConditionExpression": condition.expression,
        "ExpressionAttributeNames": condition.names,
        "ExpressionAttributeValues": condition.values,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


async def _aiodynamo(
    endpoint: str, requests: list[dict[str, Any]], concurrency: int
) -> list[Result]:
    """The same requests through aiodynamo's low-level ``send_request``, when it is installed.

    It is not a dependency: this row shows what a lighter client behind ``ChangeWriter``
    would cost, measured in the same run, once someone installs it.
    """
    if importlib.util.find_spec("aiodynamo") is None:  # before it became a dependency
        return []
    client_module = importlib.import_module("aiodynamo.client")
    credentials_module = importlib.import_module("aiodynamo.credentials")
    http_module = importlib.import_module("aiodynamo.http.aiohttp")
    async with aiohttp.ClientSession() as session:
        client = client_module.Client(
            http_module.AIOHTTP(session),
            credentials_module.StaticCredentials(
                credentials_module.Key(
                    EMBEDDED_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    EMBEDDED_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                )
            ),
            REGION,
            endpoint=yarl.URL(endpoint),
        )

        def send(payload: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
            return lambda: client.send_request(action="PutItem", payload=payload)

        warm, work = requests[:WARMUP_WRITES], requests[WARMUP_WRITES:]
        await cpu_per_call([send(p) for p in warm], concurrency=concurrency)
        cost = await cpu_per_call([send(p) for p in work], concurrency=concurrency)
    return [
        Result(
            NAME,
            "bare aiodynamo send_request",
            cost,
            "µs",
            None,
            "the same PutItem requests, prebuilt: the lighter SDK alone",
        )
    ]


def _put(writer: ConditionalWriter, change: Change) -> Callable[[], Awaitable[Any]]:
    return lambda: writer.put(change, now=time.time())


async def cpu_per_call(calls: list[Callable[[], Awaitable[Any]]], *, concurrency: int) -> float:
    """CPU µs per call, running ``calls`` with ``concurrency`` outstanding."""
    pending = iter(calls)

    async def worker() -> None:
        for call in pending:
            await call()

    started = time.process_time()
    async with asyncio.timeout(60 + len(calls) / 50), asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return (time.process_time() - started) / len(calls) * 1e6


async def sdk_cost(writes: int = 3000, *, concurrency: int = 16) -> list[Result]:
    with credentials(), announced([sys.executable, "-m", "bench.stub"], name="stub") as port:
        clients = Clients({REGION: f"http://127.0.0.1:{port}"})
        try:
            return await _measure(clients, writes, concurrency, f"http://127.0.0.1:{port}")
        finally:
            await clients.aclose()


async def service_put_client(clients: Clients) -> Any:
    """The client ``replicator run`` hands ``ConditionalWriter`` (as ``service`` builds it)."""
    put_client = getattr(clients, "put_client", None)
    if put_client is not None:
        return await put_client(REGION)
    return await clients.get("dynamodb", REGION)


def _writer(client: Any) -> ConditionalWriter:
    return ConditionalWriter(
        client,
        TARGET.table,
        region=REGION,
        meta=META,
        mode=Mode.ONE_WAY,
        tombstone_ttl_seconds=TTL_SECONDS,
    )


async def _measure(clients: Clients, writes: int, concurrency: int, endpoint: str) -> list[Result]:
    work = changes(writes + WARMUP_WRITES)
    warm, work = work[:WARMUP_WRITES], work[WARMUP_WRITES:]
    botocore_client = await clients.get("dynamodb", REGION)
    service_client = await service_put_client(clients)
    writer, botocore_writer = _writer(service_client), _writer(botocore_client)
    kind = type(service_client).__name__
    if service_client is botocore_client:
        kind = "aiobotocore"
    now = time.time()
    # Warm the connection pools and the SDKs' caches outside the measurement.
    for each in (writer, botocore_writer):
        await cpu_per_call([_put(each, c) for c in warm], concurrency=concurrency)

    def bare(change: Change) -> Callable[[], Awaitable[Any]]:
        arguments = request(change, now)
        return lambda: botocore_client.put_item(**arguments)

    figures: dict[str, float] = {}
    with progress(f"[6] {writes:,} writes x 4 paths against a stub", total=4) as done:
        figures["writer"] = await cpu_per_call(
            [_put(writer, c) for c in work], concurrency=concurrency
        )
        done(1)
        figures["applier"] = await _through_applier(writer, work, concurrency)
        done(2)
        figures["botocore writer"] = await cpu_per_call(
            [_put(botocore_writer, c) for c in work], concurrency=concurrency
        )
        done(3)
        figures["bare"] = await cpu_per_call([bare(c) for c in work], concurrency=concurrency)
        done(4)
    lighter = await _aiodynamo(endpoint, [request(c, now) for c in (*warm, *work)], concurrency)
    return [
        Result(
            NAME,
            f"ConditionalWriter, the service's write path ({kind})",
            figures["writer"],
            "µs",
            GOAL,
            f"client CPU per conditional PutItem, {writes:,} writes, concurrency {concurrency}",
            {"client": kind, "figures_us": figures},
        ),
        Result(
            NAME,
            "same, through TargetApplier",
            figures["applier"],
            "µs",
            None,
            "per-key workers, metrics and lag included",
        ),
        Result(
            NAME,
            "ConditionalWriter over aiobotocore",
            figures["botocore writer"],
            "µs",
            None,
            "the write path before the lighter client",
        ),
        Result(
            NAME,
            "bare aiobotocore put_item",
            figures["bare"],
            "µs",
            None,
            "prebuilt arguments: the SDK alone",
        ),
        *lighter,
    ]


async def _through_applier(
    writer: ConditionalWriter, work: list[Change], concurrency: int
) -> float:
    metrics = Metrics(source_region=SOURCE_REGION)
    applier = TargetApplier(
        writer, NullDeadLetters(), target=TARGET, metrics=metrics, max_concurrency=concurrency
    )
    try:
        batches = [work[i : i + 1000] for i in range(0, len(work), 1000)]
        started = time.process_time()
        async with asyncio.timeout(60 + len(work) / 50):
            for batch in batches:
                await applier.apply("bench", coalesce(batch))
        return (time.process_time() - started) / len(work) * 1e6
    finally:
        metrics.shutdown()
