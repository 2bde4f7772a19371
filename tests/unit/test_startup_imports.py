"""``replicator run`` loads only what its first write needs (bench 10: start-up time).

botocore's client machinery and boto3 cost about 0.2 s of CPU before a first request,
aiohttp's web server the dashboard's share: none of them may creep back onto the path
from the command to the service through a module-level import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

# What the service's run path must not import (the tools and the dashboard load them lazily).
NOT_ON_THE_RUN_PATH = (
    "boto3",
    "aiobotocore",
    "botocore.session",
    "botocore.client",
    "botocore.config",
    "aiohttp.web",
)


def loaded_after(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    ).stdout
    return set(json.loads(output))


def test_the_command_and_the_service_leave_botocore_boto3_and_the_web_server_unloaded() -> None:
    loaded = loaded_after("replicator.cli", "replicator.service", "replicator.startup")
    assert "replicator.json_client" in loaded
    assert sorted(m for m in NOT_ON_THE_RUN_PATH if m in loaded) == []
