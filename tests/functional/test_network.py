"""The run path's clients on the networks deployments have: proxies and private CAs.

Each client comes from ``Clients``, the factory ``replicator run`` uses, and writes to a
real moto server; the endpoints are names only the proxy can resolve (``*.invalid``), so a
request that went around the proxy would fail rather than pass unnoticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botocore.session import Session
from botocore.utils import get_environ_proxies
from yarl import URL

from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import ensure_table
from replicator.errors import ConfigError
from tests.network_rig import certificate, forward_proxy, tls_front

pytestmark = pytest.mark.timeout(30)
REGION = "us-east-1"
HIDDEN = "dynamodb.us-east-1.invalid"  # resolved by the test proxy alone
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_network_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the machine's proxy settings nor its AWS config file (a ca_bundle) apply."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


@pytest.fixture
async def table(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[str]:
    direct = Clients(endpoints)
    try:
        client = await direct.json("dynamodb", REGION)
        await ensure_table(client, unique_name, [("pk", "HASH", "S")])
        yield unique_name
    finally:
        await direct.aclose()


async def stored(endpoints: dict[str, str], table: str, pk: str) -> bool:
    direct = Clients(endpoints)
    try:
        found = await (await direct.json("dynamodb", REGION)).get_item(
            TableName=table, Key={"pk": {"S": pk}}
        )
        return "Item" in found
    finally:
        await direct.aclose()


def moto(endpoints: dict[str, str]) -> tuple[str, int]:
    url = URL(endpoints[REGION])
    assert url.host is not None and url.port is not None
    return url.host, url.port


async def put(clients: Clients, table: str, pk: str) -> None:
    client = await clients.put_client(REGION, table)
    await client.put_item(TableName=table, Item={"pk": {"S": pk}})


async def test_an_http_endpoint_is_asked_through_http_proxy_with_its_credentials(
    endpoints: dict[str, str], table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = {f"{HIDDEN}:4566": moto(endpoints)}
    async with forward_proxy(routes, credentials="ops:pa%ss") as (proxy, port):
        monkeypatch.setenv("HTTP_PROXY", f"http://ops:pa%25ss@127.0.0.1:{port}")
        clients = Clients({REGION: f"http://{HIDDEN}:4566"})
        try:
            for pk in ("a", "b", "c"):
                await put(clients, table, pk)
        finally:
            await clients.aclose()
    monkeypatch.delenv("HTTP_PROXY")  # the test's own look at the table goes direct
    assert [(s.method, s.target) for s in proxy.seen] == [("POST", f"http://{HIDDEN}:4566/")] * 3
    assert {s.authorization for s in proxy.seen} == {"Basic b3BzOnBhJXNz"}  # ops:pa%ss
    assert await stored(endpoints, table, "c")


async def test_a_proxy_refusing_the_credentials_stops_with_the_setting_to_fix(
    endpoints: dict[str, str], table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = {f"{HIDDEN}:4566": moto(endpoints)}
    async with forward_proxy(routes, credentials="ops:right") as (_, port):
        monkeypatch.setenv("http_proxy", f"ops:wrong@127.0.0.1:{port}")  # botocore reads http://
        clients = Clients({REGION: f"http://{HIDDEN}:4566"})
        try:
            with pytest.raises(ConfigError, match="HTTP_PROXY") as refused:
                await RetryPolicy().call("put", REGION, lambda: put(clients, table, "a"))
        finally:
            await clients.aclose()
    assert "wrong" not in str(refused.value)  # the proxy's password is never shown


async def test_an_https_endpoint_is_tunnelled_with_connect_and_verified_by_aws_ca_bundle(
    endpoints: dict[str, str], table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = certificate(tmp_path, HIDDEN)
    async with (
        tls_front(moto(endpoints), cert_file, key_file) as tls_port,
        forward_proxy({f"{HIDDEN}:443": ("127.0.0.1", tls_port)}) as (proxy, port),
    ):
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        untrusting = Clients({REGION: f"https://{HIDDEN}"})
        try:
            with pytest.raises(ConfigError, match=f"https://{HIDDEN} does not verify"):
                await put(untrusting, table, "a")  # TLS inside the tunnel is verified too
        finally:
            await untrusting.aclose()
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
        clients = Clients({REGION: f"https://{HIDDEN}"})
        try:
            for pk in ("a", "b"):
                await put(clients, table, pk)
        finally:
            await clients.aclose()
    # moto closes its connection after each answer: a tunnel per write.
    assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"{HIDDEN}:443")] * 3
    assert await stored(endpoints, table, "b")


@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [("", True), ("localhost,.example.com", True), ("example.com, 127.0.0.1", False), ("*", False)],
)
async def test_no_proxy_is_read_as_botocore_reads_it(
    endpoints: dict[str, str],
    table: str,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    proxied: bool,
) -> None:
    async with forward_proxy() as (proxy, port):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", no_proxy)
        # The oracle: whether botocore would send this endpoint's requests to the proxy.
        assert bool(get_environ_proxies(endpoints[REGION])) is proxied
        clients = Clients(endpoints)
        try:
            await put(clients, table, "a")
        finally:
            await clients.aclose()
    assert len(proxy.seen) == (1 if proxied else 0)


async def test_a_certificate_that_does_not_verify_stops_with_one_line_naming_aws_ca_bundle(
    endpoints: dict[str, str], table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = certificate(tmp_path)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    async with tls_front(moto(endpoints), cert_file, key_file) as tls_port:
        clients = Clients({REGION: f"https://127.0.0.1:{tls_port}"})
        try:
            async with asyncio.timeout(10):  # retried for ever, it would time out instead
                with pytest.raises(ConfigError) as raised:
                    await RetryPolicy().call("put", REGION, lambda: put(clients, table, "a"))
        finally:
            await clients.aclose()
    message = str(raised.value)
    assert "\n" not in message
    assert f"https://127.0.0.1:{tls_port}" in message
    assert "AWS_CA_BUNDLE is not set" in message


async def test_an_unreadable_aws_ca_bundle_is_named(
    endpoints: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    clients = Clients({REGION: "https://127.0.0.1:1"})
    try:
        with pytest.raises(ConfigError, match=r"AWS_CA_BUNDLE: .*missing\.pem"):
            await clients.put_client(REGION, "t")
    finally:
        await clients.aclose()


async def test_the_profiles_ca_bundle_is_trusted_as_botocore_trusts_it(
    endpoints: dict[str, str], table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = certificate(tmp_path)
    aws_config = tmp_path / "config"
    aws_config.write_text(f"[default]\nregion = {REGION}\n[profile ops]\nca_bundle = {cert_file}\n")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    assert Session().get_config_variable("ca_bundle") == str(cert_file)  # the oracle
    async with tls_front(moto(endpoints), cert_file, key_file) as tls_port:
        clients = Clients({REGION: f"https://127.0.0.1:{tls_port}"})
        try:
            await put(clients, table, "a")
        finally:
            await clients.aclose()
    assert await stored(endpoints, table, "a")
