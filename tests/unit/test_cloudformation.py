"""The deploy templates lint clean, pass checkov, and the IAM template grants only what it names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "deploy" / "cloudformation").glob("*.yaml"))
CHECKOV_VENV = ROOT / ".venv-checkov"
SKIP = re.compile(r"#\s*checkov:skip=(CKV\w+)(?::\s*(.*))?")
pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_pass_cfn_lint(template: Path) -> None:
    # The pinned one from this venv: an older cfn-lint on PATH carries older AWS data (it
    # dated python3.11's end on Lambda a year early).
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    result = subprocess.run(
        [cfn_lint, str(template)], capture_output=True, text=True, check=False, timeout=100
    )
    assert result.returncode == 0, result.stdout + result.stderr


def checkov() -> Path:
    """checkov from a venv of its own, created on first use from pyproject's `checkov` extra."""
    executable = CHECKOV_VENV / "bin" / "checkov"
    if not executable.exists():
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        requirements = project["optional-dependencies"]["checkov"]
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, timeout=120)
        pip = [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *requirements], check=True, timeout=480)
    return executable


def run_checkov(cwd: Path, templates: list[Path]) -> dict[str, Any]:
    """checkov's report on the templates in ``cwd``, asserted clean: no failed check, every
    skip one the templates justify."""
    # BC_SKIP_MAPPING and --skip-download keep checkov off the network (it would fetch
    # guidelines from its vendor otherwise).
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
    # A relative directory: checkov's secrets check (CKV_AWS_45) also reads the file path it
    # stores on each resource, and flagged the Lambda function under /tmp/clean6/...
    command = [str(checkov()), "--directory", str(templates[0].parent.relative_to(cwd))]
    options = ["--framework", "cloudformation", "--skip-download", "--output", "json"]
    result = subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
        cwd=cwd,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {m[0] for t in templates for m in SKIP.findall(t.read_text())}
    return report


@pytest.mark.timeout(600)
def test_checkov_reports_no_failed_check_on_the_templates() -> None:
    report = run_checkov(ROOT, TEMPLATES)
    assert report["summary"]["passed"] > 30  # it did look at every template


def with_default(template: str, parameter: str, value: str) -> str:
    """The template with ``parameter``'s default replaced: checkov renders only the
    resources whose conditions hold for the defaults."""
    block = re.compile(rf"(\n  {parameter}:\n(?:    .*\n)*?    Default: ).*")
    changed, count = block.subn(lambda m: m[1] + value, template)
    assert count == 1, parameter
    return changed


@pytest.mark.timeout(600)
def test_checkov_reports_no_failed_check_on_the_kinesis_source_resources(tmp_path: Path) -> None:
    rendered = tmp_path / "kinesis"
    rendered.mkdir()
    lambda_mode = (ROOT / "deploy" / "cloudformation" / "lambda.yaml").read_text()
    (rendered / "lambda.yaml").write_text(with_default(lambda_mode, "SourceKind", "kinesis"))
    containers = (ROOT / "deploy" / "cloudformation" / "ecs.yaml").read_text()
    stream = "arn:aws:kinesis:us-east-1:123456789012:stream/replicator-changes"
    (rendered / "ecs.yaml").write_text(with_default(containers, "KinesisStreamArn", stream))
    report = run_checkov(tmp_path, sorted(rendered.glob("*.yaml")))
    checked = {c["resource"] for c in report["results"]["passed_checks"]}
    assert {
        "AWS::Kinesis::Stream.KinesisStream",
        "AWS::IAM::ManagedPolicy.KinesisReadPolicy",
        "AWS::IAM::ManagedPolicy.TaskKinesisPolicy",
    } <= checked


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_skipped_checkov_check_is_justified_next_to_its_resource(template: Path) -> None:
    lines = template.read_text().splitlines()
    for number, line in enumerate(lines):
        match = SKIP.search(line)
        if match:
            assert len(match[2] or "") > 30, f"{template.name}:{number + 1}: say why it is skipped"
            # Inside a resource's block: the nearest line indented as a resource is its name.
            owner = next(x for x in reversed(lines[:number]) if re.match(r"^\s{0,2}\S", x))
            assert re.match(r"^  \w+:$", owner), f"{template.name}:{number + 1}: not in a resource"


SOURCE = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
TARGET = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"


def iam_policies(endpoints: dict[str, str], stack: str, **parameters: str) -> dict[str, Any]:
    """Deploy iam.yaml: each output's policy, as its statements by Sid."""
    region = "us-east-1"
    cloudformation = boto3.client(
        "cloudformation", region_name=region, endpoint_url=endpoints[region]
    )
    iam = boto3.client("iam", region_name=region, endpoint_url=endpoints[region])
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=(ROOT / "deploy/cloudformation/iam.yaml").read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    policies = {}
    for output in cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]:
        arn = output["OutputValue"]
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
        document: Any = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])[
            "PolicyVersion"
        ]["Document"]
        if isinstance(document, str):
            document = json.loads(document)
        policies[output["OutputKey"]] = {s["Sid"]: s for s in document["Statement"]}
    return policies


def test_the_iam_policy_grants_only_the_named_tables_and_their_streams(
    endpoints: dict[str, str],
) -> None:
    policies = iam_policies(
        endpoints, "replicator-iam", SourceTableArns=SOURCE, TargetTableArns=TARGET
    )
    assert list(policies) == ["PolicyArn"]  # no Kinesis stream named, no Kinesis grant
    statements = policies["PolicyArn"]
    assert _list(statements["ReadSourceStreams"]["Resource"]) == [f"{SOURCE}/stream/*"]
    assert _list(statements["ApplyToTargets"]["Resource"]) == [TARGET]
    # Deletes are tombstone puts: no DeleteItem on a replicated table, only on old checkpoints.
    deleting = [s for s in statements.values() if "dynamodb:DeleteItem" in _list(s["Action"])]
    assert [s["Sid"] for s in deleting] == ["CheckpointsAndDeadLetters"]
    assert "*" not in [a for s in statements.values() for a in _list(s["Action"])]


def test_the_iam_template_grants_a_named_kinesis_stream_its_reads_and_the_tie_reads_only(
    endpoints: dict[str, str], unique_name: str
) -> None:
    stream = f"arn:aws:kinesis:us-east-1:123456789012:stream/{unique_name}"
    policies = iam_policies(
        endpoints, unique_name, SourceTableArns=SOURCE, TargetTableArns=TARGET,
        KinesisStreamArn=stream,
    )  # fmt: skip
    kinesis = policies["KinesisPolicyArn"]
    assert set(kinesis) == {"ReadKinesisStream", "TieReads"}
    assert set(_list(kinesis["ReadKinesisStream"]["Action"])) == {
        "kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:GetShardIterator",
        "kinesis:GetRecords",
    }  # fmt: skip
    assert _list(kinesis["ReadKinesisStream"]["Resource"]) == [stream]
    assert _list(kinesis["TieReads"]["Action"]) == ["dynamodb:GetItem"]
    assert _list(kinesis["TieReads"]["Resource"]) == [SOURCE]


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
