"""What a region's role or profile failing means: retried (STS busy) or refused (exit 2)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, ProfileNotFound

from replicator.aws.accounts import Identity, chains_for
from replicator.config.credentials import RegionCredentials
from replicator.errors import ConfigError, CredentialsRefused

ROLE = "arn:aws:iam::111111111111:role/replicator-target"


def sts_error(code: str, status: int) -> ClientError:
    answer: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(answer, "AssumeRole")


IDENTITY = Identity.of("eu-west-1", RegionCredentials(role_arn=ROLE))


@pytest.mark.parametrize(
    "exc", [sts_error("AccessDenied", 403), sts_error("ValidationError", 400), NoCredentialsError()]
)
def test_a_refusal_is_a_config_error_naming_region_and_role_never_retried(exc: Exception) -> None:
    error = IDENTITY.failed(exc)

    assert isinstance(error, CredentialsRefused) and isinstance(error, ConfigError)
    assert not error.retryable
    assert str(error).startswith(f"credentials.eu-west-1: role {ROLE}: cannot be used (")
    assert str(error).endswith(
        "— check the role's trust policy, the external_id and the caller's sts:AssumeRole"
    )


@pytest.mark.parametrize("exc", [sts_error("Throttling", 400), sts_error("InternalFailure", 500)])
def test_sts_busy_or_down_is_retried_and_still_names_the_role(exc: Exception) -> None:
    error = IDENTITY.failed(exc)

    assert not isinstance(error, ConfigError)
    assert error.retryable
    assert str(error).startswith(f"credentials.eu-west-1: role {ROLE}: ")


def test_a_missing_profile_is_refused_with_the_profile_fix() -> None:
    identity = Identity.of("cn-north-1", RegionCredentials(profile="china"))

    error = identity.failed(ProfileNotFound(profile="china"))

    assert isinstance(error, CredentialsRefused)
    assert str(error).startswith("credentials.cn-north-1: profile 'china': cannot be used (")
    assert str(error).endswith("— check the profile in the AWS config files")


def test_regions_naming_the_same_entry_share_one_chain_and_others_have_their_own() -> None:
    role, profile = RegionCredentials(role_arn=ROLE), RegionCredentials(profile="china")

    chains = chains_for({"eu-west-1": role, "eu-central-1": role, "cn-north-1": profile})

    assert chains["eu-west-1"] is chains["eu-central-1"]
    assert chains["cn-north-1"] is not chains["eu-west-1"]
