"""The write path's PutItem client: binary data, and errors classified like botocore's."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import boto3
import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from replicator.aws.classify import classify
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import ensure_table
from replicator.demo.embedded import free_port
from replicator.errors import LeaseLost

pytestmark = pytest.mark.timeout(60)
REGION = "eu-west-1"


@pytest.fixture
async def clients(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Clients]:
    """Clients with a fresh table ``unique_name`` in ``REGION``."""
    factory = Clients(endpoints)
    try:
        await ensure_table(
            await factory.json("dynamodb", REGION), unique_name, [("pk", "HASH", "S")]
        )
        yield factory
    finally:
        await factory.aclose()


@pytest.fixture
async def put(clients: Clients) -> DynamoDB:
    return await clients.put_client(REGION)


async def test_binary_attributes_as_the_stream_has_them_are_stored_as_those_bytes(
    endpoints: dict[str, str], put: DynamoDB, unique_name: str
) -> None:
    # The stream's base64 text goes out as it came: DynamoDB stores the bytes it encodes
    # (an SDK that decodes binaries reads them back), not the text as bytes.
    raw, parts = b"\x00\xffraw", [b"a", b"b"]
    item = {"pk": {"S": "k"}, "blob": {"B": b64(raw)}, "blobs": {"BS": [b64(p) for p in parts]}}
    await put.put_item(TableName=unique_name, Item=item)
    boto = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoints[REGION])
    stored = boto.get_item(TableName=unique_name, Key={"pk": {"S": "k"}})["Item"]
    assert stored["blob"] == {"B": raw}
    assert sorted(stored["blobs"]["BS"]) == parts


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_an_oversized_item_is_a_record_fault_for_the_dlq(
    put: DynamoDB, unique_name: str
) -> None:
    huge = {"pk": {"S": "k"}, "data": {"S": "x" * 500_000}}
    with pytest.raises(ClientError) as raised:
        await put.put_item(TableName=unique_name, Item=huge)
    error = classify(raised.value)
    assert error.record_fault and not error.retryable
    assert error.code == "ValidationException"


async def test_an_unreachable_region_is_a_retryable_error() -> None:
    clients = Clients({REGION: f"http://127.0.0.1:{free_port()}"})
    try:
        put = await clients.put_client(REGION)
        with pytest.raises(ConnectionError) as raised:
            await put.put_item(TableName="t", Item={"pk": {"S": "k"}})
        assert classify(raised.value).retryable
    finally:
        await clients.aclose()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[list[tuple[int, bytes]], str]]:
    """An endpoint that answers each request with the next scripted (status, body)."""
    answers: list[tuple[int, bytes]] = []

    async def answer(request: web.Request) -> web.Response:
        status, body = answers.pop(0)
        return web.Response(status=status, body=body, content_type="application/x-amz-json-1.0")

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield answers, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (500, b"<html>Internal Server Error</html>", "HTTP500", True),
        (503, b"", "HTTP503", True),
        (
            400,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException"}',
            "ThrottlingException",
            True,
        ),
        (
            400,
            b'{"__type":"com.amazon.coral.service#ExpiredTokenException"}',
            "ExpiredTokenException",
            True,
        ),
        (
            400,
            b'{"__type":"com.amazon.coral.validate#ValidationException","message":"bad"}',
            "ValidationException",
            False,
        ),
        (413, b"not json", "HTTP413", False),
    ],
)
async def test_error_answers_are_classified_like_botocore_errors(
    scripted: tuple[list[tuple[int, bytes]], str],
    status: int,
    body: bytes,
    code: str,
    retryable: bool,
) -> None:
    answers, endpoint = scripted
    answers.append((status, body))
    clients = Clients({REGION: endpoint})
    try:
        put = await clients.put_client(REGION)
        with pytest.raises(ClientError) as raised:
            await put.put_item(TableName="t", Item={"pk": {"S": "k"}})
    finally:
        await clients.aclose()
    error = classify(raised.value)
    assert (error.code, error.retryable) == (code, retryable)


async def test_a_200_answer_that_is_not_json_is_a_retryable_connection_fault(
    scripted: tuple[list[tuple[int, bytes]], str],
) -> None:
    answers, endpoint = scripted
    answers.append((200, b"<html>a proxy's page</html>"))
    clients = Clients({REGION: endpoint})
    try:
        put = await clients.put_client(REGION)
        with pytest.raises(ConnectionError) as raised:
            await put.put_item(TableName="t", Item={"pk": {"S": "k"}})
    finally:
        await clients.aclose()
    error = classify(raised.value)
    assert (error.code, error.retryable) == ("Connection", True)


async def test_a_guard_is_asked_as_the_request_is_sent_and_a_refusal_writes_nothing(
    clients: Clients, unique_name: str
) -> None:
    allowed = True

    def guard() -> None:
        if not allowed:
            raise LeaseLost("the lease is not held")

    put = await clients.put_client(REGION, guard=guard)
    await put.put_item(TableName=unique_name, Item={"pk": {"S": "sent"}})
    allowed = False

    with pytest.raises(LeaseLost):  # the fence's own error, never a network fault to retry
        await put.put_item(TableName=unique_name, Item={"pk": {"S": "refused"}})

    table = await clients.json("dynamodb", REGION)
    stored = await table.scan(TableName=unique_name)
    assert [item["pk"]["S"] for item in stored["Items"]] == ["sent"]
