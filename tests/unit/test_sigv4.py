"""Our SigV4 signer agrees with botocore's ``SigV4Auth`` for the requests the client sends.

Ours signs the Host header and path the connection pool sends for an endpoint URL; botocore
signs the Host and path it derives from the same URL. They must be the same bytes.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from yarl import URL

from replicator.aws.credentials import Key
from replicator.aws.http_pool import ConnectionPool
from replicator.aws.sigv4 import CONTENT_TYPE, Signer
from tests.sigv4_oracle import botocore_authorization

BODY = b'{"TableName":"orders","Item":{"pk":{"S":"k1"}}}'
TARGETS = {
    "dynamodb": "DynamoDB_20120810.PutItem",
    "dynamodbstreams": "DynamoDBStreams_20120810.GetRecords",
}
KEY = Key("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
URLS = (
    "https://dynamodb.eu-west-1.amazonaws.com",
    "https://streams.dynamodb.cn-north-1.amazonaws.com.cn/",
    "https://vpce-0a1b.dynamodb.us-east-1.vpce.amazonaws.com/prefix",
    "https://vpce.example/a/./b//c/../prefix/",
    "https://proxy.example/with%20space/~user",
    "http://127.0.0.1:8000/",
    "http://[::1]:8000",
    "https://[::1]",
    "https://[fd00::1]:443/ddb",
    "https://DynamoDB.EU-West-1.AmazonAWS.com:8443",
    "https://dynamodb.eu-west-1.amazonaws.com:443",
)


def ours(url: str, target: str, key: Key, now: float, region: str) -> dict[str, str]:
    """Signed as ``JsonClient`` signs: for the Host and path its pool sends."""
    endpoint = URL(url)
    pool = ConnectionPool(endpoint, limit=1, connect_timeout=1, keepalive=1)
    signer = Signer(pool.host, region, path=endpoint.raw_path, service="dynamodb")
    return signer.headers(key, target, BODY, now=now)


def theirs(url: str, target: str, key: Key, stamp: str, region: str) -> str:
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}
    return botocore_authorization(url, headers, BODY, key, region=region, stamp=stamp)


def at(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("service", TARGETS)
@pytest.mark.parametrize("region", ["eu-west-1", "cn-north-1", "us-gov-west-1"])
@pytest.mark.parametrize("token", [None, "session/token+with=chars"])
def test_signature_matches_botocore(url: str, service: str, region: str, token: str | None) -> None:
    key = Key(KEY.id, KEY.secret, token)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    signed = ours(url, TARGETS[service], key, at(stamp), region)
    assert signed["Authorization"] == theirs(url, TARGETS[service], key, stamp, region)
    assert signed["X-Amz-Date"] == stamp
    assert signed.get("X-Amz-Security-Token") == token


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://[::1]:8000/", "[::1]:8000"),
        ("https://[::1]:443/", "[::1]"),
        ("https://DynamoDB.EU-West-1.AmazonAWS.com:8443", "dynamodb.eu-west-1.amazonaws.com:8443"),
        ("http://127.0.0.1:80/", "127.0.0.1"),
    ],
)
def test_the_host_sent_is_the_one_botocore_signs(url: str, host: str) -> None:
    # An IPv6 literal keeps its brackets (``Host: ::1:8000`` is not a host and a port).
    assert ConnectionPool(URL(url), limit=1, connect_timeout=1, keepalive=1).host == host


def test_the_day_rolls_over_at_midnight_utc_within_one_signer() -> None:
    # The cached timestamp and day key move together: a request at 23:59:59.9 is signed
    # for that day, the next one at 00:00:00 for the next day (and the next year).
    url, target = "https://dynamodb.eu-west-1.amazonaws.com", TARGETS["dynamodb"]
    endpoint = URL(url)
    signer = Signer(endpoint.host or "", "eu-west-1")
    for now, stamp in (
        (at("20261231T235959Z") + 0.9, "20261231T235959Z"),
        (at("20270101T000000Z"), "20270101T000000Z"),
        (at("20270101T000000Z") + 0.5, "20270101T000000Z"),
    ):
        signed = signer.headers(KEY, target, BODY, now=now)
        assert signed["X-Amz-Date"] == stamp
        assert signed["Authorization"] == theirs(url, target, KEY, stamp, "eu-west-1")


def test_the_cached_day_key_follows_the_date_and_the_secret() -> None:
    host = "dynamodb.eu-west-1.amazonaws.com"
    signer = Signer(host, "eu-west-1")
    midnight = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    old, rotated = Key("AKID", "secret-1", None), Key("AKID", "secret-2", None)
    for key, now in ((old, midnight), (old, midnight + 2), (rotated, midnight + 2)):
        fresh = Signer(host, "eu-west-1")  # nothing cached
        expected = fresh.headers(key, TARGETS["dynamodb"], BODY, now=now)
        assert signer.headers(key, TARGETS["dynamodb"], BODY, now=now) == expected
