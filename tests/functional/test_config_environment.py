"""Config from the environment: REPLICATOR_CONFIG names the file, REPLICATOR_CONFIG_YAML holds it.

Each command runs as the operator runs it (``python -m replicator``), with the variables in its
environment and no ``-c``; errors must name the variable the config came from.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3
import pytest

from replicator.config.schema import load_config
from tests.e2e.helpers import CLI, SOURCE, TARGET, create_tables, stop, wait_until, write_config

pytestmark = pytest.mark.timeout(90)
VARIABLES = ("REPLICATOR_CONFIG", "REPLICATOR_CONFIG_YAML")
CONFIG = f"""
source_region: {SOURCE}
pairs:
  - source_table: orders
    targets: [{{region: {TARGET}, table: orders}}]
"""


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return {**env, **variables}


def replicator(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False,
        env=environment(**variables),
    )  # fmt: skip


def test_validate_reads_the_yaml_the_variable_holds() -> None:
    result = replicator("validate", REPLICATOR_CONFIG_YAML=CONFIG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("REPLICATOR_CONFIG_YAML: ok (1 table(s), 1 target(s))")


def test_validate_reads_the_file_the_variable_names(tmp_path: Path) -> None:
    path = tmp_path / "replicator.yaml"
    path.write_text(CONFIG)
    result = replicator("validate", REPLICATOR_CONFIG=str(path))
    assert result.returncode == 0, result.stderr
    assert "".join(result.stdout.splitlines()).startswith(f"REPLICATOR_CONFIG={path}: ok")


YAML, FILE = "REPLICATOR_CONFIG_YAML", "REPLICATOR_CONFIG"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({YAML: "pairs: [\n"}, f"{YAML}: line 2, column 1: invalid YAML"),
        ({YAML: "source_region: us-east-1\n"}, f"{YAML}: pairs"),
        ({FILE: "/nonexistent/r.yaml"}, f"{FILE}=/nonexistent/r.yaml: file not found"),
        ({FILE: "/r.yaml", YAML: "{}"}, f"both {FILE} and {YAML} are set"),
        ({}, f"no config — pass -c replicator.yaml, or set {FILE}"),
    ],
)
def test_a_bad_or_missing_config_is_one_line_naming_the_variable(
    variables: dict[str, str], expected: str
) -> None:
    result = replicator("validate", **variables)
    assert result.returncode == 2
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


def start_run(log: Path, **variables: str) -> subprocess.Popen[bytes]:
    """``replicator run`` with no -c, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, "run"], stdout=out, stderr=subprocess.STDOUT, env=environment(**variables)
        )


async def test_run_starts_from_replicator_config_yaml_alone_and_replicates(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name)
    await create_tables(load_config(path))
    log = tmp_path / "run.log"
    process = start_run(log, REPLICATOR_CONFIG_YAML=path.read_text())
    path.unlink()  # nothing on disk: the variable alone
    source = boto3.client("dynamodb", region_name=SOURCE, endpoint_url=endpoints[SOURCE])
    target = boto3.client("dynamodb", region_name=TARGET, endpoint_url=endpoints[TARGET])
    try:
        source.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "version": {"N": "1"}})

        async def replicated() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            found = target.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})
            return "Item" in found

        await wait_until(replicated, within=45, what="the write to reach the target")
    finally:
        assert stop(process) == 0, log.read_text()[-3000:]
