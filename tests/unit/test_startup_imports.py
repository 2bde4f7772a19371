"""``replicator run`` loads only what its first write needs (bench 10: start-up time).

botocore's client machinery and boto3 cost about 0.2 s of CPU before a first request,
the OpenTelemetry SDK with prometheus_client 60 ms, aiohttp 50 ms (only the dashboard and
the tools use it; the service sends over ``http_pool``): none of them may creep back onto
the path from the command to the service through a module-level import. The exporter
loads at the first scrape and exports the same figures. Endpoint resolution loads
botocore's rules engine (about 40 ms of CPU) at the first client of a region that
replicator.yaml gives no endpoint for, and never a session or client
(``test_endpoints.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replicator.service.gc_tuning import GC_THRESHOLDS

pytestmark = pytest.mark.timeout(60)

# What the service's run path must not import (the tools and the dashboard load them lazily).
NOT_ON_THE_RUN_PATH = (
    "boto3",
    "aiobotocore",
    "botocore.session",
    "botocore.client",
    "botocore.config",
    "aiohttp",
    "opentelemetry.sdk",
    "prometheus_client",
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
    loaded = loaded_after(
        "replicator.cli.main", "replicator.service.run", "replicator.service.startup"
    )
    assert "replicator.aws.json_client" in loaded
    assert sorted(m for m in NOT_ON_THE_RUN_PATH if m in loaded) == []


def test_the_dashboard_leaves_the_exporter_to_the_first_scrape() -> None:
    loaded = loaded_after("replicator.service.run", "replicator.web.server")
    assert sorted(m for m in ("opentelemetry.sdk", "prometheus_client") if m in loaded) == []


def test_a_metrics_object_loads_the_exporter_at_its_first_scrape() -> None:
    code = (
        "import sys, time\n"
        "from replicator.telemetry.metrics import Metrics\n"
        "metrics = Metrics(source_region='us-east-1')\n"
        "metrics.records_read('t', 3, newest_created_at=time.time() - 2, shard_id='s1')\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "print(metrics.prometheus_text().decode())\n"
        "metrics.shutdown()\n"
    )
    text = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    ).stdout
    assert "replicator_records_read_total{" in text
    assert 'shard_id="s1",source_table="t"} 2.' in text  # the age of the last record read


def test_replicator_run_collects_rarely_from_its_start(tmp_path: Path) -> None:
    # The service's collector settings apply before it loads its modules (40 ms of
    # collecting spared): a run refused for its config has them already.
    code = (
        "import gc, sys\n"
        "from typer.testing import CliRunner\n"
        "from replicator.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['run', '-c', {str(tmp_path / 'absent.yaml')!r}])\n"
        "print(result.exit_code, list(gc.get_threshold()))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    ).stdout.split(maxsplit=1)
    assert output == ["2", f"{list(GC_THRESHOLDS)}\n"]
