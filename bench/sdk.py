"""Benchmark 6: client CPU per conditional PutItem, SDK included.

The target is ``bench.stub`` in another process, answering ``{}`` at once, so the only
CPU counted (``time.process_time``) is this process's: on a real DynamoDB target this,
not the network, bounds writes per core. Write paths, same changes, same concurrency:

- the replicated write: ``ConditionalWriter.put`` over the client ``replicator run``
  gives it (``Clients.put_client``): the goal's figure;
- the same behind ``TargetApplier`` (workers, metrics, lag): what the pipeline pays;
- ``ConditionalWriter.put`` over aiobotocore, and bare aiobotocore / aiodynamo client
  calls on the same requests: each SDK's share alone. Neither is in the product any
  more; both stay in the ``dev`` extra for this comparison only.

The paths take turns in rounds and each reports its median, so the machine's drift
(it is shared) weighs on all of them alike; the goal is also judged as a ratio to
bare aiobotocore measured in the same run.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import yarl
from aiodynamo.client import Client as DynamoClient
from aiodynamo.credentials import Key, StaticCredentials
from aiodynamo.http.aiohttp import AIOHTTP

from bench.backlog import RAW_CONCURRENCY
from bench.env import announced, credentials
from bench.fakes import META, TARGET, NullDeadLetters, synthetic_record
from bench.results import Goal, Result
from bench.ui import progress
from replicator.apply.applier import TargetApplier
from replicator.apply.condition import build_condition
from replicator.apply.writer import ConditionalWriter, target_item
from replicator.aws.factory import Clients
from replicator.demo.embedded import EMBEDDED_CREDENTIALS
from replicator.models import Change, Mode
from replicator.stream.records import coalesce, to_change
from replicator.telemetry.metrics import Metrics

NAME = "6 SDK cost per write"
GOAL = Goal("<=", 250, "µs")
# The reference figure for bare aiobotocore on the machine the goal was set on:
# the goal is 250/680 of it, so the same ratio is judged against bare aiobotocore here.
REFERENCE_AIOBOTOCORE_US = 680.0
REGION = "eu-west-1"
SOURCE_REGION = "us-east-1"
TTL_SECONDS = 7 * 24 * 3600
WARMUP_WRITES = 100
ROUNDS = 5  # paths take turns, so drift in machine speed weighs on every path alike

WritePath = Callable[[list[Change]], Awaitable[None]]


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


def concurrently(
    call: Callable[[Change], Awaitable[Any]], *, concurrency: int, timeout: float = 120
) -> WritePath:
    """A path that runs ``call`` on every change with ``concurrency`` outstanding."""

    async def path(work: list[Change]) -> None:
        pending = iter(work)

        async def worker() -> None:
            for change in pending:
                await call(change)

        async with asyncio.timeout(timeout + len(work) / 50), asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())

    return path


async def interleaved(
    paths: Mapping[str, WritePath], work: list[Change], rounds: int
) -> dict[str, float]:
    """Median CPU µs per change of each path, the paths taking turns over ``rounds``."""
    rounds = max(1, min(rounds, len(work)))  # every round gets at least one change
    size = len(work) // rounds
    samples: dict[str, list[float]] = {name: [] for name in paths}
    with progress(
        f"[6] {len(work):,} writes x {len(paths)} paths against a stub", total=rounds
    ) as done:
        for round_ in range(rounds):
            chunk = work[round_ * size : (round_ + 1) * size]
            for name, path in paths.items():
                started = time.process_time()
                await path(chunk)
                samples[name].append((time.process_time() - started) / len(chunk) * 1e6)
            done(round_ + 1)
    return {name: statistics.median(values) for name, values in samples.items()}


async def sdk_cost(writes: int = 3000, *, concurrency: int = RAW_CONCURRENCY) -> list[Result]:
    """At the writes in flight a pair allows by default, as benchmarks 2-4 run."""
    with credentials(), announced([sys.executable, "-m", "bench.stub"], name="stub") as port:
        endpoint = f"http://127.0.0.1:{port}"
        clients = Clients({REGION: endpoint})
        try:
            async with (
                aiohttp.ClientSession() as session,
                _aiobotocore(endpoint, concurrency) as botocore_client,
            ):
                lighter = _aiodynamo(session, endpoint)
                return await _measure(clients, botocore_client, lighter, writes, concurrency)
        finally:
            await clients.aclose()


def _aiobotocore(endpoint: str, connections: int) -> Any:
    """aiobotocore's DynamoDB client as the product configured it before it left.

    Retries off (``total_max_attempts`` counts the first attempt), so only one request's
    cost is counted, as for the other paths.
    """
    from aiobotocore.session import get_session
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=connections,
    )
    return get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=endpoint, config=config
    )


def _writer(client: Any) -> ConditionalWriter:
    return ConditionalWriter(
        client,
        TARGET.table,
        region=REGION,
        meta=META,
        mode=Mode.ONE_WAY,
        tombstone_ttl_seconds=TTL_SECONDS,
    )


def _aiodynamo(session: aiohttp.ClientSession, endpoint: str) -> DynamoClient:
    key = Key(
        EMBEDDED_CREDENTIALS["AWS_ACCESS_KEY_ID"], EMBEDDED_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    )
    return DynamoClient(
        AIOHTTP(session), StaticCredentials(key), REGION, endpoint=yarl.URL(endpoint)
    )


async def _measure(
    clients: Clients,
    botocore_client: Any,
    lighter: DynamoClient,
    writes: int,
    concurrency: int,
) -> list[Result]:
    work = changes(writes + WARMUP_WRITES)
    warm, work = work[:WARMUP_WRITES], work[WARMUP_WRITES:]
    writer = _writer(await clients.put_client(REGION))
    botocore_writer = _writer(botocore_client)
    now = time.time()
    # The bare SDK paths send prebuilt requests: only the SDK's own cost is counted.
    prebuilt = {id(change): request(change, now) for change in (*warm, *work)}
    metrics = Metrics(source_region=SOURCE_REGION)
    applier = TargetApplier(
        writer, NullDeadLetters(), target=TARGET, metrics=metrics, max_concurrency=concurrency
    )

    async def through_applier(chunk: list[Change]) -> None:
        async with asyncio.timeout(120 + len(chunk) / 50):
            await applier.apply("bench", coalesce(chunk))

    def put(each: ConditionalWriter) -> WritePath:
        return concurrently(lambda c: each.put(c, now=time.time()), concurrency=concurrency)

    paths: dict[str, WritePath] = {
        "writer": put(writer),
        "applier": through_applier,
        "botocore writer": put(botocore_writer),
        "bare aiobotocore": concurrently(
            lambda c: botocore_client.put_item(**prebuilt[id(c)]), concurrency=concurrency
        ),
        "bare aiodynamo": concurrently(
            lambda c: lighter.send_request(action="PutItem", payload=prebuilt[id(c)]),
            concurrency=concurrency,
        ),
    }
    try:
        for path in paths.values():  # warm connection pools and the SDKs' caches
            await path(warm)
        figures = await interleaved(paths, work, ROUNDS)
    finally:
        metrics.shutdown()
    scaled = figures["writer"] * REFERENCE_AIOBOTOCORE_US / figures["bare aiobotocore"]
    context = f"{writes:,} writes, concurrency {concurrency}, median of {ROUNDS} interleaved rounds"
    return [
        Result(
            NAME,
            "ConditionalWriter, the service's write path",
            figures["writer"],
            "µs",
            GOAL,
            f"client CPU per conditional PutItem on this machine; {context}",
            {"figures_us": figures},
        ),
        Result(
            NAME,
            "same, at the goal's reference speed",
            scaled,
            "µs",
            GOAL,
            f"x {REFERENCE_AIOBOTOCORE_US:.0f} / bare aiobotocore here "
            f"({figures['bare aiobotocore']:.0f} µs): the goal as a ratio, "
            f"{figures['writer'] / figures['bare aiobotocore']:.2f}x aiobotocore "
            f"vs {GOAL.value / REFERENCE_AIOBOTOCORE_US:.2f}x allowed",
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
            figures["bare aiobotocore"],
            "µs",
            None,
            "prebuilt requests: the SDK alone",
        ),
        Result(
            NAME,
            "bare aiodynamo client send_request",
            figures["bare aiodynamo"],
            "µs",
            None,
            "aiodynamo's whole client (its retry loop included), prebuilt requests",
        ),
    ]
