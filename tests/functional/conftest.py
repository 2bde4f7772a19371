"""Fixtures for every module here: the pipeline rig's (defined in ``test_pipeline_faults``)
and a one-way pair with its tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.config.schema import Config, load_config
from tests.e2e.helpers import create_tables, write_config
from tests.functional.kinesis_rig import kinesis_pair  # noqa: F401 (a fixture, found by name)
from tests.functional.test_pipeline_faults import (  # noqa: F401 (fixtures, found by name)
    control_client,
    metrics,
    new_metrics,
    rig,
)


@pytest.fixture
async def pair(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> AsyncIterator[tuple[Config, Path, Clients]]:
    """A one-way pair (us-east-1 -> eu-west-1) with its tables: config, its file, clients."""
    path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name)
    config = load_config(path)
    await create_tables(config)
    clients = Clients(config.endpoints)
    try:
        yield config, path, clients
    finally:
        await clients.aclose()
