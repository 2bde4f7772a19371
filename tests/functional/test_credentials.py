"""The lean clients sign with the standard AWS credential chain, not only environment keys.

Operators run the service under roles: an EKS service account (web identity), SSO or an
assumed-role profile, ``credential_process``. Those are botocore's chain; a profile with
``credential_process`` stands in for all of them here, as it needs no network.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from replicator.aws.backoff import Backoff
from replicator.aws.credentials import CredentialChain
from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError, ShutdownInterrupted
from tests.stub_dynamodb import StubDynamoDB

pytestmark = pytest.mark.timeout(60)
REGION = "us-east-1"
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture
def no_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def profile_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_environment_keys: None) -> str:
    """No keys in the environment; a profile whose keys come from ``credential_process``."""
    answer = {"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "process-secret"}
    script = tmp_path / "creds.py"
    script.write_text(f"print({json.dumps(json.dumps(answer))})\n")
    config = tmp_path / "config"
    config.write_text(f"[profile replicator]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "replicator")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return "AKIDPROCESS"


async def test_a_profile_outside_the_environment_signs_the_requests(
    profile_only: str, endpoints: dict[str, str], unique_name: str
) -> None:
    chain = CredentialChain()
    key = await chain.key()
    assert key is not None and key.id == profile_only
    clients = Clients(endpoints)
    try:
        client = await clients.json("dynamodb", REGION)
        with pytest.raises(ClientError) as refused:
            await client.describe_table(TableName=unique_name)
        # The lean client found keys and sent the request (moto checks no signature: the
        # key asserted above is what shows whose keys they were).
        assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        await clients.aclose()


async def test_environment_keys_come_first(
    profile_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    key = await CredentialChain().key()
    assert key is not None and key.id == "AKIDENV"


async def test_a_failing_source_is_a_retryable_fault_naming_credentials(
    no_environment_keys: None,
) -> None:
    def broken() -> object:
        raise RuntimeError("the token endpoint did not answer")

    chain = CredentialChain(resolve=broken)
    with pytest.raises(AwsError, match="credentials could not be obtained") as raised:
        await chain.key()
    assert raised.value.retryable


@pytest.fixture
def rotating_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_environment_keys: None
) -> None:
    """A profile whose ``credential_process`` serves new keys each run (AKID1, AKID2, ...),
    each valid for an hour."""
    runs = tmp_path / "runs"
    runs.write_text("0")
    script = tmp_path / "rotating.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "n = int(runs.read_text()) + 1\n"
        "runs.write_text(str(n))\n"
        "expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': f'AKID{n}', 'SecretAccessKey': 's',\n"
        "    'SessionToken': f'token{n}', 'Expiration': expiry.isoformat()}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile rotating]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "rotating")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def test_a_key_refused_as_expired_is_replaced_and_the_retry_signs_with_the_new_one(
    rotating_profile: None,
) -> None:
    """botocore holds the key valid for an hour; DynamoDB says it expired (revoked)."""
    async with StubDynamoDB(expired={"AKID1"}) as dynamodb:
        clients = Clients({REGION: dynamodb.endpoint})
        try:
            put = await clients.put_client(REGION, "t")
            policy = RetryPolicy(backoff=Backoff(base=0.01, cap=0.05))
            await policy.call(
                "put", REGION, lambda: put.put_item(TableName="t", Item={"pk": {"S": "k"}})
            )
        finally:
            await clients.aclose()
    assert [(signed.key_id, signed.refused) for signed in dynamodb.requests] == [
        ("AKID1", "ExpiredTokenException"),
        ("AKID2", None),
    ]


async def test_keys_refused_again_are_retried_with_backoff_not_in_a_hot_loop(
    rotating_profile: None,
) -> None:
    waits: list[float] = []
    stop = asyncio.Event()

    async def wait(seconds: float, _stop: asyncio.Event) -> bool:
        waits.append(seconds)
        return len(waits) == 3  # the service stops after the third backoff

    async with StubDynamoDB(expired={f"AKID{n}" for n in range(1, 10)}) as dynamodb:
        clients = Clients({REGION: dynamodb.endpoint})
        try:
            put = await clients.put_client(REGION, "t")
            policy = RetryPolicy(stop=stop, wait=wait)
            with pytest.raises(ShutdownInterrupted, match="ExpiredTokenException"):
                await policy.call(
                    "put", REGION, lambda: put.put_item(TableName="t", Item={"pk": {"S": "k"}})
                )
        finally:
            await clients.aclose()
    # Each refusal is followed by a backoff and then one fresh lookup, never a burst.
    assert [signed.key_id for signed in dynamodb.requests] == ["AKID1", "AKID2", "AKID3"]
    assert len(waits) == 3 and all(seconds > 0 for seconds in waits)
