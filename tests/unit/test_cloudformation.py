"""The deploy templates lint clean and deploy on the embedded backend."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

TEMPLATES = sorted(Path("deploy/cloudformation").glob("*.yaml"))
pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_pass_cfn_lint(template: Path) -> None:
    cfn_lint = shutil.which("cfn-lint") or str(Path(sys.executable).with_name("cfn-lint"))
    result = subprocess.run(
        [cfn_lint, str(template)], capture_output=True, text=True, check=False, timeout=100
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_iam_policy_grants_only_the_named_tables_and_their_streams(
    endpoints: dict[str, str],
) -> None:
    region = "us-east-1"
    source = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
    target = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
    cloudformation = boto3.client(
        "cloudformation", region_name=region, endpoint_url=endpoints[region]
    )
    iam = boto3.client("iam", region_name=region, endpoint_url=endpoints[region])
    cloudformation.create_stack(
        StackName="replicator-iam",
        TemplateBody=Path("deploy/cloudformation/iam.yaml").read_text(),
        Parameters=[
            {"ParameterKey": "SourceTableArns", "ParameterValue": source},
            {"ParameterKey": "TargetTableArns", "ParameterValue": target},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )
    outputs = cloudformation.describe_stacks(StackName="replicator-iam")["Stacks"][0]["Outputs"]
    arn = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "PolicyArn")
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    document: Any = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])[
        "PolicyVersion"
    ]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert _list(statements["ReadSourceStreams"]["Resource"]) == [f"{source}/stream/*"]
    assert _list(statements["ApplyToTargets"]["Resource"]) == [target]
    assert "dynamodb:DeleteItem" not in json.dumps(document)  # deletes are tombstone puts
    assert "*" not in [a for s in statements.values() for a in _list(s["Action"])]


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
