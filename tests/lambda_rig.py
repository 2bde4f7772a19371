"""A source table in us-east-1 replicated to eu-west-1 by Lambda functions under the ESM driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from replicator.apply.applier import ChangeWriter
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
from replicator.errors import AwsError
from replicator.lambda_mode.function import LambdaFunction
from replicator.lambda_mode.sources import WriterSeam
from replicator.models import Change, Outcome, TargetRef
from replicator.stream.source import DynamoDBStreamSource
from replicator.tools.verify import Difference, verify
from tests.esm_driver import EsmDriver, Function, Mapping

US, EU = "us-east-1", "eu-west-1"
KEY_SCHEMA = [("pk", "HASH", "S")]


def config_for(
    endpoints: dict[str, str], table: str, *, mode: str = "one-way", max_concurrency: int = 32
) -> Config:
    return parse_config(
        {
            "source_region": US,
            "mode": mode,
            "endpoints": {region: endpoints[region] for region in (US, EU)},
            "control_table": f"{table}-control",
            "dlq_table": f"{table}-dlq",
            "pairs": [
                {
                    "source_table": table,
                    "targets": [{"region": EU, "table": table}],
                    "max_concurrency": max_concurrency,
                }
            ],
            "web": {"enabled": False},
        }
    )


class FailingWrites:
    """Our writer seam: after ``after`` writes went through, the next ``times`` attempts
    fail as DynamoDB's 500 does (retryable), then writes go through again."""

    def __init__(self, inner: ChangeWriter, *, after: int, times: int) -> None:
        self.inner = inner
        self.after = after
        self.times = times
        self.passed = 0
        self.attempts = 0

    async def put(self, change: Change, *, now: float) -> Outcome:
        self.attempts += 1
        if self.passed >= self.after and self.times > 0:
            self.times -= 1
            raise AwsError(
                "InternalServerError: injected", code="InternalServerError", retryable=True
            )
        outcome = await self.inner.put(change, now=now)
        self.passed += 1
        return outcome


class Unanswered:
    """Our writer seam: while ``hanging`` is set, a write is sent and never answered (a
    blackholed region: no error, only the attempt's deadline would end it)."""

    def __init__(self, inner: ChangeWriter) -> None:
        self.inner = inner
        self.hanging = True

    async def put(self, change: Change, *, now: float) -> Outcome:
        if self.hanging:
            await asyncio.Event().wait()
        return await self.inner.put(change, now=now)


class RefusedKey:
    """Our writer seam: the target refuses one key's items as DynamoDB refuses a record
    (a ValidationException: too large with our metadata, a type error)."""

    def __init__(self, inner: ChangeWriter, key: str) -> None:
        self.inner = inner
        self.key = key

    async def put(self, change: Change, *, now: float) -> Outcome:
        if change.keys["pk"].get("S") == self.key:
            raise AwsError(
                "ValidationException: Item size has exceeded the maximum allowed size",
                code="ValidationException",
                record_fault=True,
            )
        return await self.inner.put(change, now=now)


@dataclass
class Rig:
    config: Config
    clients: Clients
    source: DynamoDBStreamSource
    stream_arn: str
    functions: list[LambdaFunction] = field(default_factory=list)

    @property
    def table(self) -> str:
        return self.config.pairs[0].source_table

    @asynccontextmanager
    async def sqs(self) -> AsyncIterator[Any]:
        """SQS, the OnFailure destination: the product makes no SQS call, so aiobotocore's."""
        from aiobotocore.session import get_session

        endpoint = self.config.endpoints[US].url("dynamodb")  # moto serves every service
        async with get_session().create_client(
            "sqs", region_name=US, endpoint_url=endpoint
        ) as client:
            yield client

    async def db(self, region: str = US) -> DynamoDB:
        return await self.clients.json("dynamodb", region)

    def function(
        self, writer_seam: WriterSeam | None = None, *, config: Config | None = None
    ) -> LambdaFunction:
        function = LambdaFunction(config or self.config, writer_seam=writer_seam)
        self.functions.append(function)
        return function

    def driver(self, functions: list[Function], mapping: Mapping | None = None) -> EsmDriver:
        return EsmDriver(self.source, self.stream_arn, functions, mapping or Mapping(), sqs=None)

    async def put(self, key: str, version: int | None, **attributes: dict[str, Any]) -> None:
        item: dict[str, Any] = {"pk": {"S": key}, **attributes}
        if version is not None:
            item["version"] = {"N": str(version)}
        await (await self.db()).put_item(TableName=self.table, Item=item)

    async def delete(self, key: str) -> None:
        await (await self.db()).delete_item(TableName=self.table, Key={"pk": {"S": key}})

    async def differences(self) -> list[Difference]:
        report = await verify(self.config, recheck_delay=0.05)
        return report.differences

    async def dead_letters(self) -> list[dict[str, Any]]:
        page = await (await self.db()).scan(TableName=self.config.dlq_table, ConsistentRead=True)
        items: list[dict[str, Any]] = page["Items"]
        return items


@asynccontextmanager
async def lambda_rig(endpoints: dict[str, str], table: str, **config: Any) -> AsyncIterator[Rig]:
    clients = Clients(endpoints)
    try:
        source_db = await clients.json("dynamodb", US)
        await ensure_table(source_db, table, KEY_SCHEMA, stream=True)
        await ensure_table(
            await clients.json("dynamodb", EU), table, KEY_SCHEMA, ttl_attribute="_rep_expires"
        )
        source = DynamoDBStreamSource(source_db, await clients.json("dynamodbstreams", US))
        rig = Rig(
            config_for(endpoints, table, **config), clients, source, await source.stream_arn(table)
        )
        try:
            yield rig
        finally:
            for function in rig.functions:
                await asyncio.to_thread(function.close)
    finally:
        await clients.aclose()


def target_of(rig: Rig) -> TargetRef:
    return TargetRef(EU, rig.table)
