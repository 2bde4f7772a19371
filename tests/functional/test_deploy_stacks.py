"""Both stacks deploy on moto's CloudFormation with what they promise, and grant no more.

Moto skips ``AWS::CloudWatch::Alarm`` (with a warning), so the alarms are read from the
parsed templates and checked against the metrics the code emits.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from replicator.lambda_mode.metrics import NAMESPACE, EmfMetrics
from replicator.models import Outcome, TargetRef
from tests.unit.test_deploy_assets import exported

ROOT = Path(__file__).resolve().parents[2]
LAMBDA = ROOT / "deploy" / "cloudformation" / "lambda.yaml"
ECS = ROOT / "deploy" / "cloudformation" / "ecs.yaml"
REGION = "us-east-1"
HEARTBEAT_KEY = f"__replicator_heartbeat__#{REGION}"
TARGETS = ("eu-west-1", "ap-southeast-2")
INSIGHTS = re.compile(r'SELECT \w+\((\w+)\) FROM "([^"]+)"(?: GROUP BY ([\w, ]+))?')
# The one grant AWS accepts only on "*": it names no resource.
STAR_ONLY = {"ecr:GetAuthorizationToken"}
STREAM_READS = {"dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"}
# What replicator's own Kinesis reader calls; Lambda's poller also calls DescribeStream.
KINESIS_READS = {
    "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator",
    "kinesis:ListShards",
}  # fmt: skip
POLLER_KINESIS_READS = KINESIS_READS | {"kinesis:DescribeStream"}
pytestmark = pytest.mark.timeout(120)


def client(endpoints: dict[str, str], service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoints[REGION])


def source_tables(endpoints: dict[str, str], name: str, count: int) -> tuple[list[str], list[str]]:
    """``count`` source tables with streams: their table ARNs and stream ARNs."""
    dynamodb = client(endpoints, "dynamodb")
    tables, streams = [], []
    for i in range(count):
        described = dynamodb.create_table(
            TableName=f"{name}-{i}",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        tables.append(described["TableArn"])
        streams.append(described["LatestStreamArn"])
    return tables, streams


def target_arns(name: str, count: int) -> list[str]:
    return [
        f"arn:aws:dynamodb:{region}:123456789012:table/{name}-{i}"
        for i in range(count)
        for region in TARGETS
    ]


def deploy(endpoints: dict[str, str], stack: str, template: Path, **parameters: str) -> Any:
    cloudformation = client(endpoints, "cloudformation")
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=template.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cloudformation.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    }


def attached_grants(endpoints: dict[str, str], role: str) -> list[dict[str, Any]]:
    """The statements of every policy on ``role``: managed ones only, no inline policy."""
    iam = client(endpoints, "iam")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == []
    statements = []
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        arn = attached["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
        body = document["Document"]
        statements += (json.loads(body) if isinstance(body, str) else body)["Statement"]
    return statements


def home_tables(name: str) -> list[str]:
    """The control and DLQ tables' ARNs, as the tests name them."""
    return [f"arn:aws:dynamodb:{REGION}:123456789012:table/{name}-{t}" for t in ("control", "dlq")]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def assert_no_wildcards(statements: list[dict[str, Any]]) -> None:
    """No wildcard in any action or resource, except "*" alone for what AWS requires."""
    for statement in statements:
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert statement["Effect"] == "Allow"
        assert not [a for a in actions if "*" in a], statement
        if "*" in resources:
            assert resources == ["*"] and set(actions) <= STAR_ONLY, statement
        else:
            assert not [r for r in resources if "*" in r], statement


def assert_least_privilege(
    statements: list[dict[str, Any]], *, streams: list[str], sources: list[str],
    targets: list[str], home: list[str], active_active: bool = False,
    kinesis: frozenset[tuple[str, str]] = frozenset(),
) -> None:  # fmt: skip
    """No wildcards; every DynamoDB ARN one of those named, with only what it needs.

    One-way, the only write into a source table is the heartbeat; active-active, the source
    table is also a target (local tombstones). ``kinesis`` is every (action, stream ARN) the
    role may call on Kinesis, exactly: with a Kinesis source it also reads the source tables
    (a tie is settled by their item); without one, Kinesis is not granted at all.
    """
    assert_no_wildcards(statements)
    named = {*streams, *sources, *targets, *home}
    for statement in statements:
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        for arn in (r for r in resources if ":dynamodb:" in r):
            assert arn in named, f"{arn} is not a configured table or stream"
            if arn in streams:
                assert set(actions) <= STREAM_READS | {"dynamodb:ListStreams"}, statement
            if arn in sources and "dynamodb:PutItem" in actions and not active_active:
                condition = statement["Condition"]["ForAllValues:StringEquals"]
                assert condition == {"dynamodb:LeadingKeys": [HEARTBEAT_KEY]}, statement
        assert not {"dynamodb:Scan", "dynamodb:CreateTable"} & set(actions)
        if "dynamodb:DeleteItem" in actions:  # old checkpoints only: deletes are tombstones
            assert set(resources) <= set(home), statement
    granted = {
        (a, r) for s in statements for a in as_list(s["Action"]) for r in as_list(s["Resource"])
    }
    assert {("dynamodb:GetRecords", s) for s in streams} <= granted
    if not streams:
        assert not {a for a, _ in granted if a in STREAM_READS}, "reads a stream it was not given"
    assert {(a, r) for a, r in granted if a.startswith("kinesis:")} == kinesis
    if kinesis:
        assert {("dynamodb:GetItem", s) for s in sources} <= granted
    assert {("dynamodb:PutItem", t) for t in targets} <= granted
    assert {("dynamodb:PutItem", t) for t in home} <= granted
    local_writes = [
        s
        for s in statements
        if "Condition" not in s
        and set(sources) & set(as_list(s["Resource"]))
        and "dynamodb:PutItem" in as_list(s["Action"])
    ]
    assert bool(local_writes) == active_active


# -- Lambda mode ----------------------------------------------------------------------------


def code_bucket(endpoints: dict[str, str], name: str) -> str:
    s3 = client(endpoints, "s3")
    s3.create_bucket(Bucket=name)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("replicator/__init__.py", "")
    s3.put_object(Bucket=name, Key="replicator-lambda-arm64.zip", Body=archive.getvalue())
    return name


def test_the_lambda_stack_deploys_one_mapping_per_stream_with_the_configured_knobs(
    endpoints: dict[str, str], unique_name: str
) -> None:
    sources, streams = source_tables(endpoints, unique_name, 2)
    targets = target_arns(unique_name, 2)
    resources = deploy(
        endpoints, unique_name, LAMBDA,
        CodeBucket=code_bucket(endpoints, unique_name), CodeKey="replicator-lambda-arm64.zip",
        Architecture="arm64", SourceTableArns=",".join(sources),
        SourceStreamArns=",".join(streams), TargetTableArns=",".join(targets),
        ControlTableName=f"{unique_name}-control", DlqTableName=f"{unique_name}-dlq",
        StartingPosition="LATEST", BatchSize="250", MaximumBatchingWindowInSeconds="3",
        ParallelizationFactor="5", MaximumRetryAttempts="7", MaximumRecordAgeInSeconds="3600",
    )  # fmt: skip
    awslambda = client(endpoints, "lambda")
    function = awslambda.get_function(FunctionName=unique_name)["Configuration"]
    assert function["Runtime"] == "python3.11"
    assert function["Handler"] == "replicator.lambda_mode.handler.handler"
    assert function["Environment"]["Variables"]["REPLICATOR_CONFIG"] == "/var/task/replicator.yaml"

    queue = client(endpoints, "sqs").get_queue_attributes(
        QueueUrl=resources["FailureQueue"], AttributeNames=["QueueArn"]
    )
    queue_arn = queue["Attributes"]["QueueArn"]
    mappings = awslambda.list_event_source_mappings(FunctionName=unique_name)["EventSourceMappings"]
    assert sorted(m["EventSourceArn"] for m in mappings) == sorted(streams)
    for mapping in mappings:
        assert mapping["StartingPosition"] == "LATEST"
        assert mapping["BatchSize"] == 250
        assert mapping["MaximumBatchingWindowInSeconds"] == 3
        assert mapping["ParallelizationFactor"] == 5
        assert mapping["BisectBatchOnFunctionError"] is True
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["MaximumRetryAttempts"] == 7
        assert mapping["MaximumRecordAgeInSeconds"] == 3600
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn

    dynamodb = client(endpoints, "dynamodb")
    for table in (f"{unique_name}-control", f"{unique_name}-dlq"):
        keys = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        assert [(k["AttributeName"], k["KeyType"]) for k in keys] == [
            ("pk", "HASH"),
            ("sk", "RANGE"),
        ]

    events = client(endpoints, "events")
    rule = events.describe_rule(Name=resources["HeartbeatSchedule"])
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["State"] == "ENABLED"
    rule_targets = events.list_targets_by_rule(Rule=resources["HeartbeatSchedule"])["Targets"]
    assert [t["Arn"] for t in rule_targets] == [function["FunctionArn"]]

    board = client(endpoints, "cloudwatch").get_dashboard(DashboardName=resources["Dashboard"])
    body = json.loads(board["DashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles[:3] == [
        "Replication lag per pair (s)",
        "Heartbeat lag per pair (s)",
        "Outcomes per minute",
    ]

    role = function["Role"].rsplit("/", 1)[1]
    assert_least_privilege(
        attached_grants(endpoints, role), streams=streams, sources=sources, targets=targets,
        home=home_tables(unique_name)[1:],  # the DLQ; the mappings keep the positions
    )  # fmt: skip
    assert "KinesisStream" not in resources


def test_the_lambda_stack_with_a_kinesis_source_maps_its_own_stream_and_reads_no_dynamodb_stream(
    endpoints: dict[str, str], unique_name: str
) -> None:
    sources, _ = source_tables(endpoints, unique_name, 2)
    targets = target_arns(unique_name, 2)
    resources = deploy(
        endpoints, unique_name, LAMBDA,
        CodeBucket=code_bucket(endpoints, unique_name), CodeKey="replicator-lambda-arm64.zip",
        SourceKind="kinesis", SourceTableArns=",".join(sources), SourceStreamArns="",
        TargetTableArns=",".join(targets), KinesisStreamName=f"{unique_name}-changes",
        KinesisRetentionHours="96", ControlTableName=f"{unique_name}-control",
        DlqTableName=f"{unique_name}-dlq", BatchSize="250", MaximumRetryAttempts="7",
        KinesisMaximumRecordAgeInSeconds="338400",
    )  # fmt: skip
    stream = client(endpoints, "kinesis").describe_stream_summary(
        StreamName=f"{unique_name}-changes"
    )["StreamDescriptionSummary"]
    assert stream["RetentionPeriodHours"] == 96
    queue = client(endpoints, "sqs").get_queue_attributes(
        QueueUrl=resources["FailureQueue"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    awslambda = client(endpoints, "lambda")
    mappings = awslambda.list_event_source_mappings(FunctionName=unique_name)["EventSourceMappings"]
    assert [m["EventSourceArn"] for m in mappings] == [stream["StreamARN"]]
    mapping = mappings[0]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == 250
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == 7
    assert mapping["MaximumRecordAgeInSeconds"] == 338400
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == queue

    role = awslambda.get_function(FunctionName=unique_name)["Configuration"]["Role"]
    assert_least_privilege(
        attached_grants(endpoints, role.rsplit("/", 1)[1]), streams=[], sources=sources,
        targets=targets, home=home_tables(unique_name)[1:],
        kinesis=frozenset((a, stream["StreamARN"]) for a in POLLER_KINESIS_READS),
    )  # fmt: skip


@pytest.mark.timeout(30)
def test_the_lambda_stacks_kinesis_stream_is_encrypted_with_the_aws_managed_key() -> None:
    # moto keeps neither the encryption nor the capacity mode: read them from the template.
    parsed, problems = decode(str(LAMBDA))
    assert not problems
    stream = parsed["Resources"]["KinesisStream"]
    assert stream["Condition"] == "KinesisSource"
    properties = stream["Properties"]
    assert properties["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert properties["StreamModeDetails"] == {"StreamMode": {"Ref": "KinesisStreamMode"}}
    assert properties["ShardCount"] == {
        "Fn::If": ["ProvisionedKinesis", {"Ref": "KinesisShardCount"}, {"Ref": "AWS::NoValue"}]
    }


def emitted_emf() -> tuple[set[str], set[str]]:
    """Metric and dimension names of the EMF documents the handler's metrics print."""
    metrics = EmfMetrics(source_region=REGION)
    target = TargetRef("eu-west-1", "orders")
    lines = io.StringIO()
    try:
        for outcome in Outcome:
            metrics.outcome("orders", target, outcome, lag=0.2)
        metrics.heartbeat("orders", target, sent_at=1.0, lag=0.05)
        metrics.version_regression("orders", target)
        metrics.conflict("orders", target, loser_region="eu-west-1", winner_region="us-east-1")
        metrics.write_retried("orders", target)
        with redirect_stdout(lines):
            metrics.flush()
    finally:
        metrics.shutdown()
    names: set[str] = set()
    dimensions: set[str] = set()
    for line in lines.getvalue().splitlines():
        for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            names |= {m["Name"] for m in directive["Metrics"]}
            dimensions |= {d for group in directive["Dimensions"] for d in group}
    return names, dimensions


def alarms(template: Path) -> dict[str, dict[str, Any]]:
    parsed, problems = decode(str(template))
    assert not problems
    return {
        name: resource["Properties"]
        for name, resource in parsed["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def watched(alarm: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(namespace, metric, group-by) of what an alarm reads, Metrics Insights included."""
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm["MetricName"], "")]
    found = []
    for query in alarm["Metrics"]:
        expression = query["Expression"]
        expression = expression["Fn::Sub"] if isinstance(expression, dict) else expression
        match = INSIGHTS.fullmatch(expression)
        assert match, expression
        found.append((match[2], match[1], match[3] or ""))
    return found


@pytest.mark.timeout(30)
def test_lambda_alarms_and_dashboard_read_metrics_the_handler_emits() -> None:
    names, dimensions = emitted_emf()
    by_alarm = {name: watched(alarm) for name, alarm in alarms(LAMBDA).items()}
    metrics = {metric for found in by_alarm.values() for _, metric, _ in found}
    assert {
        "RecordLag", "HeartbeatLag", "RecordsDeadLettered", "Conflicts", "IteratorAge", "Errors",
    } <= metrics  # fmt: skip
    assert by_alarm["FailureQueueAlarm"] == [("AWS/SQS", "ApproximateNumberOfMessagesVisible", "")]
    assert by_alarm["TrimmedDataAlarm"] == [("AWS/Lambda", "IteratorAge", "")]
    ours = [m for found in by_alarm.values() for ns, m, _ in found if ns == NAMESPACE]
    assert ours and set(ours) <= names
    board = LAMBDA.read_text()
    queries = INSIGHTS.findall(board.replace('\\"', '"'))
    assert {metric for metric, _, _ in queries} <= names
    assert {"RecordLag", "HeartbeatLag", "RecordsApplied"} <= {m for m, _, _ in queries}
    for _, _, group in queries:
        assert {g.strip() for g in group.split(",") if g.strip()} <= dimensions


# -- container mode -------------------------------------------------------------------------


def network(endpoints: dict[str, str]) -> tuple[str, str]:
    ec2 = client(endpoints, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return vpc, ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]


def test_the_ecs_stack_runs_two_tasks_from_the_config_parameter_with_a_health_check(
    endpoints: dict[str, str], unique_name: str
) -> None:
    sources, streams = source_tables(endpoints, unique_name, 1)
    targets = target_arns(unique_name, 1)
    vpc, subnet = network(endpoints)
    config = f"source_region: {REGION}\npairs: []\n"
    resources = deploy(
        endpoints, unique_name, ECS,
        SourceTableArns=",".join(sources), SourceStreamArns=",".join(streams),
        TargetTableArns=",".join(targets), VpcId=vpc, Subnets=subnet, ReplicatorConfig=config,
        ControlTableName=f"{unique_name}-control", DlqTableName=f"{unique_name}-dlq",
        Mode="active-active",
    )  # fmt: skip
    ecs = client(endpoints, "ecs")
    service = ecs.describe_services(cluster=resources["Cluster"], services=[resources["Service"]])[
        "services"
    ][0]
    assert service["desiredCount"] == 2  # the active and a standby (moto drops LaunchType)
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    replicator = task["containerDefinitions"][0]
    assert replicator["readonlyRootFilesystem"] is True
    assert "/healthz" in " ".join(replicator["healthCheck"]["command"])
    parameter = replicator["secrets"][0]["valueFrom"]
    # The image's own `replicator run` reads the variable: no shell, no file, no override.
    assert replicator["secrets"][0]["name"] == "REPLICATOR_CONFIG_YAML"
    assert not replicator.get("entryPoint") and not replicator.get("command")
    assert client(endpoints, "ssm").get_parameter(Name=parameter)["Parameter"]["Value"] == config
    groups = client(endpoints, "logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{unique_name}")
    assert {g["logGroupName"] for g in groups["logGroups"]} == {
        f"/ecs/{unique_name}",
        f"/ecs/{unique_name}/metrics",
    }

    # moto's CloudFormation drops the task definition's role ARNs: read the stack's roles.
    assert_least_privilege(
        attached_grants(endpoints, resources["TaskRole"]), streams=streams, sources=sources,
        targets=targets, home=home_tables(unique_name), active_active=True,
    )  # fmt: skip
    execution = attached_grants(endpoints, resources["ExecutionRole"])
    assert_no_wildcards(execution)
    reads = {
        r
        for s in execution
        if "ssm:GetParameters" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    assert reads == {f"arn:aws:ssm:{REGION}:123456789012:parameter/{parameter}"}


def test_the_ecs_stack_for_kinesis_pairs_reads_that_stream_and_no_dynamodb_stream(
    endpoints: dict[str, str], unique_name: str
) -> None:
    sources, _ = source_tables(endpoints, unique_name, 2)
    targets = target_arns(unique_name, 2)
    stream = f"arn:aws:kinesis:{REGION}:123456789012:stream/{unique_name}-changes"
    vpc, subnet = network(endpoints)
    resources = deploy(
        endpoints, unique_name, ECS,
        SourceTableArns=",".join(sources), SourceStreamArns="", KinesisStreamArn=stream,
        TargetTableArns=",".join(targets), VpcId=vpc, Subnets=subnet,
        ReplicatorConfig=f"source_region: {REGION}\npairs: []\n",
        ControlTableName=f"{unique_name}-control", DlqTableName=f"{unique_name}-dlq",
    )  # fmt: skip
    assert_least_privilege(
        attached_grants(endpoints, resources["TaskRole"]), streams=[], sources=sources,
        targets=targets, home=home_tables(unique_name),
        kinesis=frozenset((a, stream) for a in KINESIS_READS),
    )  # fmt: skip


@pytest.mark.timeout(30)
def test_ecs_alarms_read_gauges_and_counters_the_service_exports_and_the_agent_ships() -> None:
    parsed, _ = decode(str(ECS))
    containers = parsed["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    agent = {e["Name"]: e["Value"] for e in containers[1]["Environment"]}
    template, _ = agent["CW_CONFIG_CONTENT"]["Fn::Sub"]
    agent_config = json.loads(template.replace("${Group}", "g").replace("${MetricNamespace}", "ns"))
    rules = agent_config["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    selectors = [s for rule in rules["metric_declaration"] for s in rule["metric_selectors"]]
    labels = exported()
    by_alarm = {name: watched(alarm) for name, alarm in alarms(ECS).items()}
    for name, found in by_alarm.items():
        for namespace, metric, _ in found:
            assert namespace == "${MetricNamespace}", name
            # The agent drops histograms, so an alarm can only read a plain sample.
            assert metric in labels, f"{name}: {metric} is not exported"
            assert any(re.fullmatch(s, metric) for s in selectors), f"{name}: agent drops {metric}"
    metrics = {metric for found in by_alarm.values() for _, metric, _ in found}
    assert {
        "replicator_heartbeat_lag_seconds", "replicator_heartbeat_age_seconds",
        "replicator_records_dead_lettered_total", "replicator_iterator_age_seconds",
        "replicator_trimmed_data_total", "replicator_records_retried_total",
        "replicator_conflicts_total", "replicator_conflicts_unrecorded_total",
    } <= metrics  # fmt: skip
    for rule in rules["metric_declaration"]:
        for group in rule["dimensions"]:
            shipped = [
                m for m in labels if any(re.fullmatch(s, m) for s in rule["metric_selectors"])
            ]
            assert shipped and all(set(group) <= labels[m] for m in shipped), rule
