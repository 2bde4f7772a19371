"""`make package`'s zip: runtime dependencies only, under 50 MB, and it works on its own.

A fresh interpreter whose sys.path holds only the unpacked zip, the standard library and the
boto3/botocore that the Lambda runtime ships imports the handler and applies a batch of real
moto stream records, as Lambda would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from replicator.config.schema import load_config
from tests.e2e.helpers import SOURCE, TARGET, create_tables, write_config
from tests.esm_driver import shape

ROOT = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 50 * 1024 * 1024
TOOLING = {"moto", "pytest", "_pytest", "hypothesis", "playwright", "mypy", "ruff", "cfnlint"}
# What Lambda's Python runtime puts on sys.path after the function's own code.
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six.py")
pytestmark = pytest.mark.timeout(300)

# Runs in the fresh interpreter: argv is the unpacked zip, the runtime's packages, the event.
HANDLE_ONE_BATCH = """
import json, sys, sysconfig
task, runtime, event = sys.argv[1:4]
sys.path[:0] = [task, runtime]

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

from replicator.lambda_mode.handler import handler
with open(event) as source:
    response = handler(json.load(source), Context())
allowed = (task, runtime, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
outside = sorted(
    name for name, module in sys.modules.items()
    if getattr(module, "__file__", None) and not module.__file__.startswith(allowed)
)
print(json.dumps({"response": response, "moto": "moto" in sys.modules, "outside": outside}))
"""


@pytest.fixture(scope="module")
def built(
    endpoints: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    """The zip (with a config for the moto servers), what the build printed, and the table."""
    table = f"t-{uuid.uuid4().hex[:12]}"
    work = tmp_path_factory.mktemp("package")
    config = write_config(work / "replicator.yaml", endpoints, table)
    out = work / "replicator-lambda.zip"
    build = [sys.executable, str(ROOT / "deploy" / "package.py"), "--out", str(out)]
    result = subprocess.run(
        [*build, "--config", str(config)], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout, table


def test_the_zip_holds_the_product_and_its_runtime_dependencies_under_50_mb(
    built: tuple[Path, str, str],
) -> None:
    out, printed, _ = built
    size = out.stat().st_size
    assert size < LIMIT_BYTES
    assert re.search(rf"{size / 2**20:.1f} MB zipped", printed)  # it prints its size
    names = zipfile.ZipFile(out).namelist()
    top = {name.split("/")[0].split("-")[0].lower() for name in names}
    assert not top & TOOLING
    assert {"replicator", "aws_lambda_powertools", "boto3", "botocore", "pydantic"} <= top
    assert "replicator/lambda_mode/handler.py" in names
    assert "replicator.yaml" in names  # the config, where REPLICATOR_CONFIG points
    assert not [n for n in names if n.startswith("replicator/demo/")]
    assert not [n for n in names if "__pycache__" in n or n.startswith("bin/")]


def stream_event(endpoints: dict[str, str], table: str) -> dict[str, Any]:
    """Three writes to the source table, as the mapping would deliver them."""
    dynamodb = boto3.client("dynamodb", region_name=SOURCE, endpoint_url=endpoints[SOURCE])
    for key in ("a", "b", "c"):
        item = {"pk": {"S": key}, "version": {"N": "1"}, "note": {"S": f"from the zip {key}"}}
        dynamodb.put_item(TableName=table, Item=item)
    streams = boto3.client("dynamodbstreams", region_name=SOURCE, endpoint_url=endpoints[SOURCE])
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=100)["Records"]
    assert len(records) == 3
    return {"Records": [shape(record, arn) for record in records]}


def runtime_packages(directory: Path) -> Path:
    """Lambda's own boto3 and botocore (with their dependencies), as links to this venv's."""
    site = Path(boto3.__file__).parents[1]
    directory.mkdir()
    for name in RUNTIME_PACKAGES:
        (directory / name).symlink_to(site / name)
    return directory


async def test_the_unpacked_zip_alone_applies_a_batch_of_real_stream_records(
    built: tuple[Path, str, str], endpoints: dict[str, str], tmp_path: Path
) -> None:
    out, _, table = built
    task = tmp_path / "task"
    zipfile.ZipFile(out).extractall(task)
    await create_tables(load_config(task / "replicator.yaml"))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(stream_event(endpoints, table)))
    runtime = runtime_packages(tmp_path / "runtime")
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        "REPLICATOR_CONFIG": str(task / "replicator.yaml"),
    }
    # -I -S: no site-packages, no PYTHONPATH, no user site; only what the script adds.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-I", "-S", "-c", HANDLE_ONE_BATCH, str(task), str(runtime), str(event)],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    *emf_lines, last = result.stdout.strip().splitlines()
    outcome = json.loads(last)
    assert outcome["response"] == {"batchItemFailures": []}
    assert outcome["moto"] is False
    assert outcome["outside"] == []
    directives = [d for line in emf_lines for d in json.loads(line)["_aws"]["CloudWatchMetrics"]]
    assert "RecordsApplied" in {m["Name"] for d in directives for m in d["Metrics"]}

    replica = boto3.client("dynamodb", region_name=TARGET, endpoint_url=endpoints[TARGET])
    for key in ("a", "b", "c"):
        item = replica.get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)
        assert item["Item"]["note"] == {"S": f"from the zip {key}"}
        assert item["Item"]["_rep_origin"] == {"S": SOURCE}
