"""Replication into another account through ``credentials:`` (issue 22), as ``replicator run``
and the Lambda handler build it; a role STS refuses stops every command at start-up with one
line, exit 2; a region's profile signs that region's requests, and no other's.

moto keeps one account per assumed role: keys its STS handed out for
``arn:aws:iam::111111111111:role/...`` act in account 111111111111, whose tables are not
the default account's even where the names are the same.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.credentials import RegionCredentials
from replicator.config.schema import load_config, parse_config
from replicator.errors import CredentialsRefused
from replicator.service.run import metrics_for, run_service
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, cli, create_tables, wait_until, write_config
from tests.esm_driver import Mapping
from tests.lambda_rig import lambda_rig
from tests.stub_dynamodb import StubDynamoDB

OTHER_ACCOUNT_ROLE = "arn:aws:iam::111111111111:role/replicator-target"
KEY = [("pk", "HASH", "S")]


def with_credentials(path: Path, credentials: dict[str, Any]) -> Path:
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "credentials": credentials}))
    return path


async def scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.scan(TableName=table))["Items"]
    return items


@pytest.mark.timeout(60)
async def test_a_target_in_another_account_is_written_through_its_role_and_the_default_account_is_untouched(  # noqa: E501
    endpoints: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # STS of the region assumed into: moto's server of that region keeps the role's keys.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoints[TARGET])
    path = write_config(tmp_path / "r.yaml", endpoints, unique_name)
    entry = {"role_arn": OTHER_ACCOUNT_ROLE, "session_name": "replicator-test"}
    config = load_config(with_credentials(path, {TARGET: entry}))
    default = Clients(endpoints)
    accounts = Clients.for_config(config)
    try:
        source = await default.json("dynamodb", SOURCE)
        same_name = await default.json("dynamodb", TARGET)  # the default account's table
        other = await accounts.json("dynamodb", TARGET)  # the role's account, as run signs
        await ensure_table(source, unique_name, KEY, stream=True)
        await ensure_table(same_name, unique_name, KEY)
        await ensure_table(other, unique_name, KEY)
        await same_name.put_item(TableName=unique_name, Item={"pk": {"S": "default-only"}})
        stop, metrics = asyncio.Event(), metrics_for(config)
        service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics))
        try:
            await source.put_item(
                TableName=unique_name, Item={"pk": {"S": "a"}, "version": {"N": "1"}}
            )

            async def arrived() -> bool:
                assert not service.done(), repr(service.exception())
                answer = await other.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})
                return "Item" in answer

            await wait_until(arrived, within=30, what="the item in the other account's table")
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await service
        assert await scan(same_name, unique_name) == [{"pk": {"S": "default-only"}}]
        # verify reads the target through the same credentials: the copy, not the stranger.
        report = await verify(config, recheck_delay=0.1)
        assert report.differences == []
        assert report.compared == 1
    finally:
        await accounts.aclose()
        await default.aclose()


@pytest.mark.timeout(60)
async def test_the_lambda_handler_writes_into_the_other_account_through_the_role(
    endpoints: dict[str, str], unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoints[TARGET])
    role = {TARGET: RegionCredentials(role_arn=OTHER_ACCOUNT_ROLE)}
    async with lambda_rig(endpoints, unique_name) as rig:  # the default account's tables
        config = rig.config.model_copy(update={"credentials": role})
        accounts = Clients.for_config(config)
        try:
            other = await accounts.json("dynamodb", TARGET)
            await ensure_table(other, unique_name, KEY, ttl_attribute="_rep_expires")
            await rig.put("a", 1)
            await rig.driver([rig.function(config=config)], Mapping(batch_size=10)).drain()

            answer = await other.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})
            assert answer["Item"]["version"] == {"N": "1"}
            assert await scan(await rig.db(TARGET), unique_name) == []
        finally:
            await accounts.aclose()


class _RefusingSts(http.server.BaseHTTPRequestHandler):
    """STS refusing every AssumeRole, as it does for a role that does not trust the caller."""

    refusals: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.refusals.append(self.path)
        body = (
            b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
            b"<Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform "
            b"sts:AssumeRole</Message></Error><RequestId>1</RequestId></ErrorResponse>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def refusing_sts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """STS (``AWS_ENDPOINT_URL_STS``) is a stub refusing every AssumeRole; its refusals."""
    _RefusingSts.refusals = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingSts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{server.server_address[1]}")
        yield _RefusingSts.refusals
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case",
    [
        ("run", SOURCE),  # the control, DLQ and lease tables, the stream
        ("run", TARGET),
        ("verify", TARGET),
        ("backfill", TARGET),
        ("dlq list", SOURCE),
    ],
    ids=" ".join,
)
def test_a_role_sts_refuses_stops_each_command_at_start_up_with_one_line_naming_region_and_role(
    case: tuple[str, str],
    endpoints: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    refusing_sts: list[str],
) -> None:
    command, region = case
    path = write_config(tmp_path / "r.yaml", endpoints, unique_name)
    with_credentials(path, {region: {"role_arn": OTHER_ACCOUNT_ROLE}})
    asyncio.run(create_tables(load_config(path)))  # in the default account

    logs = ["--log-level", "WARNING"] if command == "run" else []
    done = cli(*command.split(), "-c", str(path), *logs, timeout=45)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    told = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(told) == 1, done.stderr  # a tool's progress lines go to stderr too
    (line,) = told
    assert line.startswith(f"config error credentials.{region}: role {OTHER_ACCOUNT_ROLE}")
    assert "AccessDenied" in line
    assert len(refusing_sts) == 1  # a refusal is not retried


@pytest.fixture
def target_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A profile ``target`` in the AWS files, beside the default chain's environment keys."""
    files = tmp_path / "aws"
    files.mkdir()
    (files / "credentials").write_text(
        "[target]\naws_access_key_id = AKIDTARGET\naws_secret_access_key = target-secret\n"
    )
    (files / "config").write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(files / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(files / "config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDDEFAULT")
    return "AKIDTARGET"


def stub_config(source: str, target: str, profile: str) -> Any:
    return parse_config(
        {
            "source_region": SOURCE,
            "endpoints": {SOURCE: source, TARGET: target},
            "credentials": {TARGET: {"profile": profile}},
            "pairs": [
                {"source_table": "orders", "targets": [{"region": TARGET, "table": "orders"}]}
            ],
        }
    )


@pytest.mark.timeout(30)
async def test_a_regions_profile_signs_that_regions_requests_and_the_default_chain_the_others(
    target_profile: str,
) -> None:
    async with StubDynamoDB() as source, StubDynamoDB() as target:
        clients = Clients.for_config(stub_config(source.endpoint, target.endpoint, "target"))
        try:
            for region in (SOURCE, TARGET):
                put = await clients.put_client(region, "t")
                await put.put_item(TableName="t", Item={"pk": {"S": "k"}})
        finally:
            await clients.aclose()
    assert [signed.key_id for signed in source.requests] == ["AKIDDEFAULT"]
    assert [signed.key_id for signed in target.requests] == [target_profile]


@pytest.mark.timeout(30)
async def test_a_missing_profile_is_one_line_naming_region_and_profile_and_nothing_is_sent(
    target_profile: str,
) -> None:
    async with StubDynamoDB() as source, StubDynamoDB() as target:
        clients = Clients.for_config(stub_config(source.endpoint, target.endpoint, "nope"))
        try:
            put = await clients.put_client(TARGET, "t")
            with pytest.raises(CredentialsRefused) as refused:
                await put.put_item(TableName="t", Item={"pk": {"S": "k"}})
        finally:
            await clients.aclose()
    assert str(refused.value).startswith(f"credentials.{TARGET}: profile 'nope': cannot be used")
    assert "\n" not in str(refused.value) and not refused.value.retryable
    assert target.requests == []
