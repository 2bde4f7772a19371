"""Our endpoint, signing region and signing name are what a botocore client uses, in every setting.

The oracle is the request a botocore client would send (caught at its ``before-send`` event,
never sent): its URL and the credential scope of its Authorization header. Not
``client.meta.endpoint_url``: that is botocore's older endpoint table, and it differs from
what the client sends for FIPS in GovCloud (``dynamodb-fips.us-gov-west-1`` against the
rules' ``dynamodb.us-gov-west-1``) and for dual-stack Streams (``streams.dynamodb.`` against
``streams-dynamodb.``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointResolutionError
from botocore.loaders import Loader

from replicator.aws import endpoints
from replicator.aws.endpoints import Endpoint, resolve
from replicator.errors import ConfigError

pytestmark = pytest.mark.timeout(60)

SERVICES = ("dynamodb", "dynamodbstreams", "kinesis")
REGIONS = ("us-east-1", "eu-west-1", "cn-north-1", "cn-northwest-1", "us-gov-west-1")
SETTINGS = (
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_ENDPOINT_URL_DYNAMODBSTREAMS",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)
PROFILE = """\
[default]
use_fips_endpoint = true
[profile vpce]
services = vpce
[services vpce]
dynamodb =
  endpoint_url = https://vpce-ddb.example
dynamodbstreams =
  endpoint_url = https://vpce-streams.example
kinesis =
  endpoint_url = https://vpce-kinesis.example
"""
ENVIRONMENTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "fips": {"AWS_USE_FIPS_ENDPOINT": "true"},
    "dual-stack": {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
    "fips-and-dual-stack": {"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"},
    "endpoint-url": {"AWS_ENDPOINT_URL": "https://vpce.example/prefix"},
    "endpoint-url-dynamodb": {"AWS_ENDPOINT_URL_DYNAMODB": "https://ddb.example:8443"},
    "endpoint-url-streams": {
        "AWS_ENDPOINT_URL": "https://any.example",
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": "https://streams.example",
    },
    "endpoint-url-kinesis": {
        "AWS_ENDPOINT_URL": "https://any.example",
        "AWS_ENDPOINT_URL_KINESIS": "https://kinesis.example",
    },
    # The spelling: botocore reads no such variable, so neither do we.
    "endpoint-url-dynamodbstreams": {"AWS_ENDPOINT_URL_DYNAMODBSTREAMS": "https://s.example"},
    "fips-with-endpoint-url": {
        "AWS_USE_FIPS_ENDPOINT": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8000",
    },
    "ignore-configured": {
        "AWS_ENDPOINT_URL": "https://vpce.example",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
    },
    "profile-fips": {"AWS_CONFIG_FILE": PROFILE},
    "profile-services": {"AWS_CONFIG_FILE": PROFILE, "AWS_PROFILE": "vpce"},
}
LOADER = Loader()  # one data loader for every botocore session of this module


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ~/.aws files and no endpoint settings of the machine running the tests."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


def apply(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in environment.items():
        if name == "AWS_CONFIG_FILE":
            (tmp_path / "config").write_text(value)
        monkeypatch.setenv(name, str(tmp_path / "config") if name == "AWS_CONFIG_FILE" else value)


class EmptyAnswer:
    """The body of the answer given in place of sending: ``{}``."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b"{}"


def botocore_sends(
    service: str, region: str, endpoint_url: str | None = None, *, loader: Loader | None = LOADER
) -> Endpoint:
    """The URL and credential scope of the request a botocore client builds in this setting."""
    session = botocore.session.get_session()
    if loader is not None:
        session.register_component("data_loader", loader)
    client = session.create_client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret",
    )
    sent: dict[str, Any] = {}

    def catch(request: Any, **_: Any) -> AWSResponse:
        sent["url"], sent["authorization"] = request.url, request.headers["Authorization"]
        return AWSResponse(request.url, 200, {}, EmptyAnswer())

    client.meta.events.register("before-send", catch)
    if service == "dynamodb":
        client.describe_table(TableName="orders")
    elif service == "kinesis":  # by name, as replicator's requests name a stream
        client.list_shards(StreamName="orders-changes")
    else:
        client.describe_stream(StreamArn="arn:aws:dynamodb:r:123456789012:table/t/stream/s")
    scope = re.search(rb"Credential=\w+/\d{8}/([^/]+)/([^/]+)/aws4_request", sent["authorization"])
    assert scope is not None
    # botocore adds the path "/" to a URL without one; the request line is the same.
    url = sent["url"].removesuffix("/") if sent["url"].count("/") == 3 else sent["url"]
    return Endpoint(url, scope[1].decode(), scope[2].decode())


def ours_or_refusal(service: str, region: str, configured: str | None = None) -> Endpoint | str:
    try:
        return resolve(service, region, configured)
    except ConfigError:
        return "refused"


def theirs_or_refusal(
    service: str, region: str, configured: str | None = None, *, loader: Loader | None = LOADER
) -> Endpoint | str:
    try:
        return botocore_sends(service, region, configured, loader=loader)
    except EndpointResolutionError:
        return "refused"


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("service", SERVICES)
def test_the_endpoint_is_the_one_botocore_sends_to(
    service: str,
    region: str,
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    apply(environment, monkeypatch, tmp_path)
    assert ours_or_refusal(service, region) == theirs_or_refusal(service, region)


@pytest.mark.parametrize("environment", ["defaults", "fips", "endpoint-url-streams"])
@pytest.mark.parametrize("region", ["eu-west-1", "cn-north-1"])
@pytest.mark.parametrize("service", SERVICES)
def test_an_endpoint_from_replicator_yaml_wins_as_botocores_endpoint_url_does(
    service: str,
    region: str,
    environment: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    apply(ENVIRONMENTS[environment], monkeypatch, tmp_path)
    configured = "https://vpce-1a2b.dynamodb.example/prefix"
    ours = ours_or_refusal(service, region, configured)
    assert ours == theirs_or_refusal(service, region, configured)
    assert ours == Endpoint(configured, region, "kinesis" if service == "kinesis" else "dynamodb")


def test_dual_stack_where_the_partition_has_none_is_refused_as_botocore_refuses_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # botocore's data as AWS_DATA_PATH may override it: here the aws partition has no
    # dual-stack hosts. The refusal names what to change instead of a traceback.
    partitions = json.loads((Path(botocore.__file__).parent / "data/partitions.json").read_text())
    for partition in partitions["partitions"]:
        partition["outputs"]["supportsDualStack"] = False
    (tmp_path / "partitions.json").write_text(json.dumps(partitions))
    apply(ENVIRONMENTS["dual-stack"], monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    endpoints._loader.cache_clear()
    endpoints._rules.cache_clear()
    try:
        with pytest.raises(ConfigError, match="AWS_USE_DUALSTACK_ENDPOINT"):
            resolve("dynamodb", "eu-west-1")
        assert theirs_or_refusal("dynamodb", "eu-west-1", loader=None) == "refused"
    finally:
        endpoints._loader.cache_clear()
        endpoints._rules.cache_clear()


@pytest.mark.parametrize("url", ["localhost:8000", "https://user:pw@h.example/?a=1"])
def test_an_endpoint_url_in_the_environment_that_is_no_url_is_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", url)
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL_DYNAMODB_STREAMS") as refused:
        resolve("dynamodbstreams", "eu-west-1")
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[default]\nservices = gone\n", '"gone" services configuration does not exist'),
        ("[default\nregion = x\n", "Unable to parse config file"),
    ],
)
def test_an_aws_config_file_botocore_refuses_is_one_line(
    text: str, said: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    apply({"AWS_CONFIG_FILE": text}, monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match=said) as refused:
        resolve("dynamodb", "eu-west-1")
    assert str(refused.value).endswith("— fix the AWS config file (AWS_CONFIG_FILE)")


def test_china_and_govcloud_hosts_are_their_partitions() -> None:
    # The hand-built "dynamodb.<region>.amazonaws.com" these replace never resolved in China.
    assert resolve("dynamodb", "cn-north-1").url == "https://dynamodb.cn-north-1.amazonaws.com.cn"
    assert resolve("dynamodbstreams", "us-gov-west-1").url == (
        "https://streams.dynamodb.us-gov-west-1.amazonaws.com"
    )


def loaded_by(statement: str) -> set[str]:
    """botocore's modules a fresh interpreter holds after ``statement`` (AWS config isolated)."""
    code = (
        "import sys\n"
        "from replicator.aws.endpoints import resolve\n"
        f"{statement}\n"
        "print(' '.join(m for m in sys.modules if m.startswith('botocore.')))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
        env={**os.environ, "AWS_CONFIG_FILE": "/dev/null"},
    )
    return set(output.stdout.split())


def test_an_endpoint_named_in_replicator_yaml_loads_no_botocore_rules() -> None:
    # The moto, DynamoDB Local and benchmark set-ups start without botocore's rules.
    loaded = loaded_by("resolve('dynamodbstreams', 'eu-west-1', 'http://127.0.0.1:8000')")
    assert "botocore.endpoint_provider" not in loaded
    assert "botocore.configprovider" not in loaded


def test_resolving_by_the_rules_loads_no_botocore_client_or_session() -> None:
    # About 40 ms of CPU (botocore.utils and what it imports); a session or client is more.
    loaded = loaded_by("resolve('dynamodbstreams', 'cn-north-1')")
    assert "botocore.endpoint_provider" in loaded
    assert sorted(loaded & {"botocore.session", "botocore.client", "botocore.config"}) == []
