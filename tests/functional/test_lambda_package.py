"""`make package`'s zip: built for Lambda's platform, what the handler imports and nothing else.

A fresh interpreter whose sys.path holds only the unpacked x86_64 zip and the standard library
imports the handler and applies a batch of real moto stream records, as Lambda would run it;
every module it imports from the zip is counted, and the zip holds no other package. The arm64
zip, built on this x86_64 machine, holds only aarch64 builds for the runtime's Python.
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
import yaml

from replicator.config.schema import load_config
from tests.e2e.helpers import SOURCE, TARGET, create_tables, write_config
from tests.esm_driver import shape

ROOT = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 50 * 1024 * 1024
# Neither the CLI's nor the web server's nor test tooling: the handler imports none of them.
NEVER = {"typer", "rich", "pygments", "moto", "pytest", "boto3"}
ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64
pytestmark = pytest.mark.timeout(300)

# Runs in the fresh interpreter: argv is the unpacked zip and the event.
HANDLE_ONE_BATCH = """
import json, sys, sysconfig
task, event = sys.argv[1:3]
sys.path[:0] = [task]

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

from replicator.lambda_mode.handler import handler
with open(event) as source:
    response = handler(json.load(source), Context())
allowed = (task, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
files = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()}
outside = sorted(name for name, file in files.items() if file and not file.startswith(allowed))
ours = {name.split(".")[0] for name, file in files.items() if file and file.startswith(task)}
imported = sorted(ours)
print(json.dumps({"response": response, "outside": outside, "imported": imported}))
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
    assert re.search(rf"x86_64, {size / 2**20:.1f} MB zipped", printed)  # it prints its size
    names = zipfile.ZipFile(out).namelist()
    top = {name.split("/")[0].split("-")[0].lower() for name in names}
    assert not top & NEVER
    assert {"replicator", "aws_lambda_powertools", "botocore", "pydantic"} <= top
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


async def test_the_unpacked_zip_alone_applies_a_batch_of_real_stream_records(
    built: tuple[Path, str, str], endpoints: dict[str, str], tmp_path: Path
) -> None:
    out, _, table = built
    task = tmp_path / "task"
    zipfile.ZipFile(out).extractall(task)
    await create_tables(load_config(task / "replicator.yaml"))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(stream_event(endpoints, table)))
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        "REPLICATOR_CONFIG": str(task / "replicator.yaml"),
    }
    # -I -S: no site-packages, no PYTHONPATH, no user site; only what the script adds.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-I", "-S", "-c", HANDLE_ONE_BATCH, str(task), str(event)],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    *emf_lines, last = result.stdout.strip().splitlines()
    outcome = json.loads(last)
    assert outcome["response"] == {"batchItemFailures": []}
    assert outcome["outside"] == []  # the zip alone: no site-packages, no runtime boto3
    # Every distribution shipped is one the handler imports, or one that an imported one
    # requires (botocore's urllib3 and dateutil: its endpoint rules and credential providers
    # load them on AWS, where no config names the endpoints), and nothing else ships.
    imported = set(outcome["imported"])
    shipped = distributions(task)
    kept = {name for name, tops in shipped.items() if tops & imported}
    while grown := {
        name
        for name in shipped.keys() - kept
        if normalized(name) in set().union(*(requirements(task / k) for k in kept))
    }:
        kept |= grown  # what the imported ones require, and what that requires in turn
    assert shipped.keys() - kept == set()
    owned = set().union(*shipped.values(), {"replicator", "replicator.yaml", "__pycache__"})
    on_top = {p.name.removesuffix(".py") for p in task.iterdir() if p.suffix != ".dist-info"}
    assert on_top <= owned
    directives = [d for line in emf_lines for d in json.loads(line)["_aws"]["CloudWatchMetrics"]]
    assert "RecordsApplied" in {m["Name"] for d in directives for m in d["Metrics"]}

    replica = boto3.client("dynamodb", region_name=TARGET, endpoint_url=endpoints[TARGET])
    for key in ("a", "b", "c"):
        item = replica.get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)
        assert item["Item"]["note"] == {"S": f"from the zip {key}"}
        assert item["Item"]["_rep_origin"] == {"S": SOURCE}


def distributions(task: Path) -> dict[str, set[str]]:
    """Each installed distribution's name and the top-level names its RECORD installed."""
    found = {}
    for info in task.glob("*.dist-info"):
        paths = [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines()]
        tops = {path.split("/")[0].removesuffix(".py") for path in paths}
        found[info.name] = tops - {info.name, "__pycache__", ".."}
    return found


def normalized(dist_info: str) -> str:
    """A distribution's name as requirements spell it: ``python_dateutil-2.9.0.dist-info``
    is ``python-dateutil``."""
    return re.sub(r"[-_.]+", "-", dist_info.split("-", maxsplit=1)[0]).lower()


def requirements(dist_info: Path) -> set[str]:
    """The distributions ``dist_info`` requires unconditionally, by their normalized names."""
    required = set()
    for line in (dist_info / "METADATA").read_text().splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            name = re.match(r"[A-Za-z0-9._-]+", line.removeprefix("Requires-Dist:").strip())
            if name:
                required.add(re.sub(r"[-_.]+", "-", name.group(0)).lower())
    return required


def compiled_modules(archive: Path) -> dict[str, bytes]:
    """Every compiled module in the zip: its name and its ELF header."""
    with zipfile.ZipFile(archive) as opened:
        return {
            name: opened.read(name)[:20]
            for name in opened.namelist()
            if name.endswith(".so") or ".so." in name
        }


def assert_built_for(archive: Path, arch: str) -> None:
    modules = compiled_modules(archive)
    assert modules  # pydantic_core, PyYAML, yarl, multidict at least
    machine = "aarch64" if arch == "arm64" else "x86_64"
    for name, header in modules.items():
        assert header[:4] == b"\x7fELF", name
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch], name
        # CPython 3.11's own ABI tag, or the stable ABI that 3.11 loads too.
        assert name.endswith((f".cpython-311-{machine}-linux-gnu.so", ".abi3.so")), name


def test_the_x86_64_zip_holds_x86_64_builds_for_python_3_11(
    built: tuple[Path, str, str],
) -> None:
    assert_built_for(built[0], "x86_64")


def test_the_arm64_zip_built_on_this_machine_holds_aarch64_builds_only(tmp_path: Path) -> None:
    out = tmp_path / "replicator-lambda-arm64.zip"
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "package.py"), "--arch", "arm64", "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "arm64" in result.stdout
    assert_built_for(out, "arm64")
    assert "replicator/lambda_mode/handler.py" in zipfile.ZipFile(out).namelist()


class _TemplateLoader(yaml.SafeLoader):
    """CloudFormation's short tags (!Ref X) read as {"Ref": X}."""


_TemplateLoader.add_multi_constructor(
    "!",
    lambda loader, tag, node: {
        tag: loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
    },
)


def test_the_template_runs_the_default_zip_and_asks_the_runtime_for_json_logs() -> None:
    template = yaml.load((ROOT / "deploy/cloudformation/lambda.yaml").read_text(), _TemplateLoader)
    function = template["Resources"]["Function"]["Properties"]
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    parameter = template["Parameters"]["Architecture"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^ARCH \?= {parameter['Default']}$", makefile, re.MULTILINE)
    assert (
        template["Parameters"]["CodeKey"]["Default"]
        == f"replicator-lambda-{parameter['Default']}.zip"
    )
    assert sorted(parameter["AllowedValues"]) == ["arm64", "x86_64"]
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
