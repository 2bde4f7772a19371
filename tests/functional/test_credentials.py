"""The lean clients sign with the standard AWS credential chain, not only environment keys.

Operators run the service under roles: an EKS service account (web identity), SSO or an
assumed-role profile, ``credential_process``. Those are botocore's chain; a profile with
``credential_process`` stands in for all of them here, as it needs no network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from replicator.aws.credentials import CredentialChain
from replicator.aws.factory import Clients
from replicator.errors import AwsError

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
