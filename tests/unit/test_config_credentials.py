"""``credentials:`` in replicator.yaml: a role or a profile per region, each mistake one line."""

from __future__ import annotations

from typing import Any

import pytest

from replicator.config.credentials import RegionCredentials
from replicator.config.schema import parse_config
from replicator.errors import ConfigError

ROLE = "arn:aws:iam::111111111111:role/replicator-target"


def config_with(credentials: object) -> dict[str, Any]:
    return {
        "source_region": "us-east-1",
        "credentials": credentials,
        "pairs": [
            {"source_table": "orders", "targets": [{"region": "cn-north-1", "table": "orders"}]}
        ],
    }


def test_a_role_per_target_region_and_a_profile_for_another_partition() -> None:
    config = parse_config(
        config_with(
            {
                "us-east-1": {"role_arn": ROLE, "external_id": "deploy-42", "session_name": "ops"},
                "cn-north-1": {"profile": "china"},
            }
        )
    )

    assert config.credentials == {
        "us-east-1": RegionCredentials(role_arn=ROLE, external_id="deploy-42", session_name="ops"),
        "cn-north-1": RegionCredentials(profile="china"),
    }


def test_no_credentials_means_the_default_chain_everywhere() -> None:
    assert parse_config({**config_with({}), "credentials": {}}).credentials == {}


def test_a_china_or_govcloud_role_arn_is_accepted() -> None:
    for arn in ("arn:aws-cn:iam::111111111111:role/r", "arn:aws-us-gov:iam::111111111111:role/a/b"):
        assert parse_config(config_with({"cn-north-1": {"role_arn": arn}})).credentials


BAD = [
    ({"cn-north-1": {}}, "credentials.cn-north-1: names no identity — give role_arn"),
    (
        {"cn-north-1": {"role_arn": ROLE, "profile": "p"}},
        "credentials.cn-north-1: names both a role and a profile — give role_arn",
    ),
    (
        {"cn-north-1": {"rolearn": ROLE}},
        "credentials.cn-north-1: unknown key 'rolearn' — give role_arn",
    ),
    (
        {"cn-north-1": {"role_arn": "arn:aws:iam::1:user/me"}},
        "role_arn 'arn:aws:iam::1:user/me' is not an IAM role ARN — use e.g.",
    ),
    (
        {"cn-north-1": {"profile": "p", "external_id": "abc"}},
        "credentials.cn-north-1: external_id and session_name go with role_arn — put them in",
    ),
    (
        {"cn-north-1": {"role_arn": ROLE, "session_name": "has space"}},
        "credentials.cn-north-1: session_name 'has space' is not valid — use 2 to 64",
    ),
    (
        {"eu-west-2": {"profile": "p"}},
        "credentials.eu-west-2: eu-west-2 is neither the source region nor a target's — remove",
    ),
    ({"mars-1": {"profile": "p"}}, "'mars-1' is not an AWS region code"),
]


@pytest.mark.parametrize(("credentials", "expected"), BAD)
def test_each_credentials_mistake_is_one_line_naming_the_field_and_the_fix(
    credentials: object, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(credentials))

    message = str(caught.value)
    assert expected in message
    assert len(message.splitlines()) == 1
