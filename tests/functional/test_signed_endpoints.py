"""The factory's clients reach each service's own endpoint, path included, signed as sent.

A stand-in for DynamoDB on loopback checks every request's signature as DynamoDB does: over
the Host header and path it received, with botocore's ``SigV4Auth``; a mismatch is answered
403 ``InvalidSignatureException``, as AWS answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from replicator.aws.credentials import Key
from replicator.aws.factory import Clients
from replicator.config.schema import parse_config
from tests.sigv4_oracle import botocore_authorization

pytestmark = pytest.mark.timeout(30)
REGION = "eu-west-1"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+)")


@dataclass(frozen=True)
class Seen:
    path: str
    host: str
    target: str
    signed_as_sent: bool


class SigningServer:
    """Answers ``{}`` to each request whose signature verifies, 403 otherwise; notes each."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._writers: set[asyncio.StreamWriter] = set()

    @contextlib.asynccontextmanager
    async def serving(self, address: str) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, address, 0)
        async with server:
            yield server.sockets[0].getsockname()[1]
            for writer in self._writers:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = head[0].split(" ")[1]
                fields = {}
                for line in head[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        fields[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(fields["content-length"]))
                ok = self._verifies(path, fields, body)
                self.seen.append(Seen(path, fields["host"], fields["x-amz-target"], ok))
                answer = b"{}" if ok else b'{"__type":"#InvalidSignatureException","message":"no"}'
                status = b"200 OK" if ok else b"403 Forbidden"
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                    + str(len(answer)).encode() + b"\r\n\r\n" + answer
                )
                await writer.drain()
        writer.close()

    @staticmethod
    def _verifies(path: str, fields: dict[str, str], body: bytes) -> bool:
        scope = _SCOPE.search(fields["authorization"])
        assert scope is not None
        region, service, signed = scope.groups()
        key = Key(
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            fields.get("x-amz-security-token"),
        )
        headers = {name: fields[name] for name in signed.split(";")}
        expected = botocore_authorization(
            f"http://{fields['host']}{path}",
            headers,
            body,
            key,
            region=region,
            stamp=fields["x-amz-date"],
            service=service,
        )
        return expected == fields["authorization"]


def config_with(endpoints: object) -> Clients:
    config = parse_config(
        {
            "source_region": REGION,
            "endpoints": {REGION: endpoints},
            "pairs": [
                {"source_table": "orders", "targets": [{"region": "us-east-1", "table": "orders"}]}
            ],
        }
    )
    return Clients(config.endpoints)


async def test_each_service_goes_to_its_own_endpoint_under_a_path_and_verifies() -> None:
    # A VPC endpoint or proxy per service, each under a path: Streams calls must not reach
    # the DynamoDB host (it answers UnknownOperationException), and the path is signed.
    tables, streams = SigningServer(), SigningServer()
    async with tables.serving("127.0.0.1") as table_port, streams.serving("127.0.0.1") as port:
        clients = config_with(
            {
                "dynamodb": f"http://127.0.0.1:{table_port}/ddb/prefix",
                "streams": f"http://127.0.0.1:{port}/streams",
            }
        )
        try:
            await (await clients.put_client(REGION)).put_item(TableName="o", Item={})
            reader = await clients.json("dynamodbstreams", REGION)
            await reader.get_records(ShardIterator="iterator")
        finally:
            await clients.aclose()
    assert tables.seen == [
        Seen("/ddb/prefix", f"127.0.0.1:{table_port}", "DynamoDB_20120810.PutItem", True)
    ]
    assert streams.seen == [
        Seen("/streams", f"127.0.0.1:{port}", "DynamoDBStreams_20120810.GetRecords", True)
    ]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_an_ipv6_endpoint_sends_and_signs_its_host_in_brackets() -> None:
    server = SigningServer()
    async with server.serving("::1") as port:
        clients = config_with(f"http://[::1]:{port}")
        try:
            await (await clients.put_client(REGION)).put_item(TableName="o", Item={})
        finally:
            await clients.aclose()
    assert server.seen == [Seen("/", f"[::1]:{port}", "DynamoDB_20120810.PutItem", True)]


async def test_a_service_replicator_yaml_leaves_out_goes_where_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # replicator.yaml names the Streams endpoint; DynamoDB's comes from AWS_ENDPOINT_URL,
    # which does not override the file's Streams entry.
    tables, streams = SigningServer(), SigningServer()
    async with tables.serving("127.0.0.1") as table_port, streams.serving("127.0.0.1") as port:
        monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
        for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{table_port}/from-env")
        clients = config_with({"streams": f"http://127.0.0.1:{port}"})
        try:
            await (await clients.put_client(REGION)).put_item(TableName="o", Item={})
            reader = await clients.json("dynamodbstreams", REGION)
            await reader.get_records(ShardIterator="iterator")
        finally:
            await clients.aclose()
    assert [(seen.path, seen.signed_as_sent) for seen in tables.seen] == [("/from-env", True)]
    assert [(seen.path, seen.target) for seen in streams.seen] == [
        ("/", "DynamoDBStreams_20120810.GetRecords")
    ]
