"""Our SigV4 signer agrees with botocore's for DynamoDB JSON requests."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from replicator.aws.credentials import Key
from replicator.aws.sigv4 import Signer

BODY = b'{"TableName":"orders","Item":{"pk":{"S":"k1"}}}'
TARGET = "DynamoDB_20120810.PutItem"
HOST = "dynamodb.eu-west-1.amazonaws.com"


def botocore_headers(url: str, key: Key) -> dict[str, str]:
    """botocore's headers for the same request, signed now."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=BODY,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": TARGET},
    )
    SigV4Auth(Credentials(key.id, key.secret, key.token), "dynamodb", "eu-west-1").add_auth(request)
    return dict(request.headers)


def signed_at(headers: dict[str, str]) -> float:
    stamp = dt.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    return stamp.replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("url", "host"), [(f"https://{HOST}/", HOST), ("http://127.0.0.1:8000/", "127.0.0.1:8000")]
)
@pytest.mark.parametrize("token", [None, "session-token"])
def test_signature_matches_botocore(url: str, host: str, token: str | None) -> None:
    key = Key("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    theirs = botocore_headers(url, key)
    ours = Signer(host, "eu-west-1").headers(key, TARGET, BODY, now=signed_at(theirs))
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")


def test_the_cached_day_key_follows_the_date_and_the_secret() -> None:
    signer = Signer(HOST, "eu-west-1")
    midnight = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    old, rotated = Key("AKID", "secret-1", None), Key("AKID", "secret-2", None)
    for key, now in ((old, midnight), (old, midnight + 2), (rotated, midnight + 2)):
        fresh = Signer(HOST, "eu-west-1")  # nothing cached
        expected = fresh.headers(key, TARGET, BODY, now=now)
        assert signer.headers(key, TARGET, BODY, now=now) == expected
