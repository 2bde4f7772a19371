"""Shared fixtures: one moto server per region for the whole test session (per xdist worker)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from replicator.demo.embedded import EMBEDDED_CREDENTIALS, MotoServer, embedded_backend

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


# The SDK's network and endpoint settings of whoever runs the suite: the product honours them
# (as botocore does), so a developer's proxy or endpoint would reroute the tests' traffic.
# Tests that exercise them set their own.
AMBIENT_AWS_NETWORK = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_PROFILE",
)


@pytest.fixture(scope="session", autouse=True)
def _no_ambient_network_settings() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in AMBIENT_AWS_NETWORK if name in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _embedded_credentials() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in EMBEDDED_CREDENTIALS}
    os.environ.update(EMBEDDED_CREDENTIALS)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def moto_servers() -> Iterator[dict[str, MotoServer]]:
    with embedded_backend(REGIONS) as servers:
        yield servers


@pytest.fixture(scope="session")
def endpoints(moto_servers: dict[str, MotoServer]) -> dict[str, str]:
    """Region -> endpoint URL of its moto server."""
    return {region: server.endpoint for region, server in moto_servers.items()}


@pytest.fixture
def unique_name() -> str:
    """A table name no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"
