"""replicator.yaml: the example loads, defaults hold, and every mistake is one clear line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from replicator.config.schema import Config, Pair, Target, WebConfig, load_config, parse_config
from replicator.errors import ConfigError
from replicator.models import Mode
from replicator.tools.status import status_url

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replicator.yaml"

MINIMAL = """\
source_region: us-east-1
pairs:
  - source_table: orders
    targets:
      - {region: eu-west-1, table: orders}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "replicator.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value)


def with_pair(**lines: str) -> str:
    """MINIMAL with extra lines in its pair, e.g. with_pair(tombstone_ttl="3600")."""
    extra = "".join(f"    {key}: {value}\n" for key, value in lines.items())
    return MINIMAL + extra


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE)

    assert config.source_region == "us-east-1"
    assert config.mode is Mode.ONE_WAY
    (pair,) = config.pairs
    assert (pair.source_table, pair.version_attribute) == ("orders", "version")
    assert pair.targets == [Target(region="eu-west-1", table="orders")]
    assert pair.tombstone_ttl_seconds == 7 * 24 * 3600


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))

    assert config.mode is Mode.ONE_WAY
    assert config.endpoints == {}
    assert (config.control_table, config.dlq_table) == ("replicator-control", "replicator-dlq")
    assert config.metadata_prefix == "_rep_"
    pair = config.pairs[0]
    assert pair.version_attribute == "version"
    assert pair.tombstone_ttl_seconds == 604800
    assert pair.max_concurrency == "auto"
    assert pair.max_writes_per_second is None
    assert (config.web.enabled, config.web.host, config.web.port) == (True, "127.0.0.1", 9464)
    assert config.heartbeat.enabled
    assert config.heartbeat.interval_seconds == 1.0
    assert config.heartbeat.key_prefix == "__replicator_heartbeat__"
    assert config.heartbeat.ready_max_age_seconds == 60.0


@pytest.mark.parametrize(("written", "parsed"), [("auto", "auto"), ("AUTO", "auto"), ("64", 64)])
def test_max_concurrency_is_auto_or_a_pinned_number(
    tmp_path: Path, written: str, parsed: object
) -> None:
    config = load_config(write(tmp_path, with_pair(max_concurrency=written)))
    assert config.pairs[0].max_concurrency == parsed


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [("7d", 604800), ("36h", 129600), ("1500m", 90000), ("86401s", 86401), ("90000", 90000)],
)
def test_tombstone_ttl_durations(tmp_path: Path, ttl: str, seconds: int) -> None:
    config = load_config(write(tmp_path, with_pair(tombstone_ttl=ttl)))

    assert config.pairs[0].tombstone_ttl_seconds == seconds


def test_config_is_frozen() -> None:
    config = load_config(EXAMPLE)

    with pytest.raises(ValidationError):
        config.source_region = "eu-west-1"  # type: ignore[misc]


def test_pair_can_be_built_in_code_by_attribute_name() -> None:
    pair = Pair(
        source_table="orders",
        targets=[Target(region="eu-west-1", table="orders")],
        tombstone_ttl_seconds=2 * 86400,
    )

    assert pair.tombstone_ttl_seconds == 172800


def test_regions_source_first_then_targets_once_each() -> None:
    config = Config(
        source_region="us-east-1",
        endpoints={"eu-west-1": "http://127.0.0.1:5002"},
        pairs=[
            Pair(source_table="a_table", targets=[Target(region="eu-west-1", table="a_table")]),
            Pair(
                source_table="b_table",
                targets=[
                    Target(region="ap-south-1", table="b_table"),
                    Target(region="eu-west-1", table="b_table"),
                    Target(region="us-east-1", table="b_copy"),
                ],
            ),
        ],
    )

    assert config.regions == ["us-east-1", "eu-west-1", "ap-south-1"]
    assert config.endpoint_for("eu-west-1") == "http://127.0.0.1:5002"
    assert config.endpoint_for("eu-west-1", "dynamodbstreams") == "http://127.0.0.1:5002"
    assert config.endpoint_for("us-east-1") is None


def test_a_region_names_its_dynamodb_and_streams_endpoints_apart(tmp_path: Path) -> None:
    # A VPC endpoint serves DynamoDB only: Streams needs its own (or the default rules).
    config = load_config(
        write(
            tmp_path,
            MINIMAL + "endpoints:\n  eu-west-1:\n    dynamodb: https://vpce-1.example/ddb\n"
            "    streams: https://vpce-2.example\n  us-east-1: {dynamodb: https://ddb.example}\n",
        )
    )
    assert config.endpoint_for("eu-west-1") == "https://vpce-1.example/ddb"
    assert config.endpoint_for("eu-west-1", "dynamodbstreams") == "https://vpce-2.example"
    assert config.endpoint_for("us-east-1", "dynamodbstreams") is None


TARGET = "targets:\n      - {region: eu-west-1, table: orders}"

BAD_CONFIGS = [
    pytest.param(
        with_pair(colour="red"),
        "replicator.yaml: pairs[0].colour: unknown key — remove it (allowed: source_table, "
        "version_attribute, targets, tombstone_ttl,",
        id="unknown-key",
    ),
    pytest.param(
        MINIMAL + "mdoe: active-active\n",
        "replicator.yaml: mdoe: unknown key (did you mean mode?) — remove it (allowed:",
        id="misspelt-key",
    ),
    pytest.param(
        "pairs:\n  - source_table: orders\n    " + TARGET + "\n",
        "replicator.yaml: source_region: missing — add it, e.g. source_region: us-east-1",
        id="missing-source-region",
    ),
    pytest.param(
        "source_region: us-east-1\npairs:\n  - source_table: orders\n",
        "replicator.yaml: pairs[0].targets: missing — add it, e.g. targets:",
        id="missing-targets",
    ),
    pytest.param(
        with_pair(max_concurrency="lots"),
        "replicator.yaml: pairs[0].max_concurrency: 'lots' is neither auto nor a whole number — "
        "use auto (adaptive, up to 1024) or a whole number from 1 to 1024",
        id="wrong-type-int",
    ),
    pytest.param(
        MINIMAL + "web:\n  enabled: maybe\n",
        "replicator.yaml: web.enabled: 'maybe' is not true or false — use true or false",
        id="wrong-type-bool",
    ),
    pytest.param(
        with_pair(version_attribute="12"),
        "replicator.yaml: pairs[0].version_attribute: 12 is not text — use text; quote it",
        id="wrong-type-string",
    ),
    pytest.param(
        MINIMAL + "web: 8080\n",
        "replicator.yaml: web: 8080 is not a mapping — use key: value lines",
        id="wrong-type-mapping",
    ),
    pytest.param(
        with_pair(tombstone_ttl="3600"),
        "replicator.yaml: pairs[0].tombstone_ttl: 3600 s is not longer than the 24 h stream "
        "retention — set it above 86400 s (default 7d)",
        id="tombstone-ttl-too-short",
    ),
    pytest.param(
        with_pair(tombstone_ttl="24h"),
        "pairs[0].tombstone_ttl: 24h = 86400 s is not longer than the 24 h stream retention",
        id="tombstone-ttl-exactly-retention",
    ),
    pytest.param(
        "source_region: " + "[" * 5000 + "]" * 5000 + "\n",
        "replicator.yaml: nested too deeply to read",
        id="nested-too-deeply",
    ),
    pytest.param(
        with_pair(tombstone_ttl="40000d"),
        "pairs[0].tombstone_ttl: 40000d = 3456000000 s is too long — use at most 3650d",
        id="tombstone-ttl-too-long",
    ),
    pytest.param(
        with_pair(max_writes_per_second=".inf"),
        "pairs[0].max_writes_per_second: inf is not a finite number — use a plain number",
        id="rate-cap-infinite",
    ),
    pytest.param(
        MINIMAL + "lease:\n  duration_seconds: .nan\n",
        "lease.duration_seconds: nan is not a finite number — use a plain number",
        id="lease-nan",
    ),
    pytest.param(
        with_pair(tombstone_ttl="one week"),
        "pairs[0].tombstone_ttl: 'one week' is not a duration — use whole seconds or a number "
        "with d, h, m or s",
        id="tombstone-ttl-not-a-duration",
    ),
    pytest.param(
        MINIMAL.replace("eu-west-1", "us-east-1"),
        "replicator.yaml: pairs[0].targets[0]: us-east-1/orders is the source table itself — "
        "point the target at another region or table",
        id="target-is-source",
    ),
    pytest.param(
        MINIMAL + "      - {region: eu-west-1, table: orders}\n",
        "replicator.yaml: pairs[0].targets[1]: eu-west-1/orders is listed twice "
        "(also pairs[0].targets[0]) — remove the duplicate",
        id="duplicate-target",
    ),
    pytest.param(
        MINIMAL
        + "  - source_table: orders\n    targets:\n      - {region: ap-south-1, table: orders}\n",
        "replicator.yaml: pairs[1].source_table: 'orders' is already replicated by pairs[0] — "
        "merge the targets into one pair",
        id="duplicate-source-table",
    ),
    pytest.param(
        MINIMAL.replace("source_region: us-east-1", "source_region: US-East-1"),
        "replicator.yaml: source_region: 'US-East-1' is not an AWS region code — use e.g. "
        "us-east-1",
        id="bad-source-region",
    ),
    pytest.param(
        MINIMAL.replace("region: eu-west-1", "region: eu-west"),
        "replicator.yaml: pairs[0].targets[0].region: 'eu-west' is not an AWS region code",
        id="bad-target-region",
    ),
    pytest.param(
        MINIMAL.replace("table: orders}", "table: or}"),
        "replicator.yaml: pairs[0].targets[0].table: 'or' is not a valid DynamoDB table name — "
        "use 3 to 255 characters",
        id="bad-table-name",
    ),
    pytest.param(
        MINIMAL + "dlq_table: dead letters\n",
        "replicator.yaml: dlq_table: 'dead letters' is not a valid DynamoDB table name",
        id="bad-dlq-table-name",
    ),
    pytest.param(
        MINIMAL + "endpoints:\n  eu-west-1: localhost:8000\n",
        "replicator.yaml: endpoints.eu-west-1: 'localhost:8000' is not an http:// or https:// URL "
        "— use e.g. http://127.0.0.1:8000",
        id="bad-endpoint-url",
    ),
    pytest.param(
        MINIMAL + "endpoints:\n  eu-west-1: {stream: https://s.example}\n",
        "replicator.yaml: endpoints.eu-west-1.stream: unknown key (did you mean streams?) — "
        "remove it (allowed: dynamodb, streams, kinesis)",
        id="endpoint-service-misspelt",
    ),
    pytest.param(
        MINIMAL + "endpoints:\n  eu-west-1: {}\n",
        "replicator.yaml: endpoints.eu-west-1: names no endpoint — add dynamodb:, streams: "
        "and/or kinesis: URLs",
        id="endpoint-names-no-service",
    ),
    pytest.param(
        MINIMAL + "endpoints:\n  eu-west-1: {streams: 'vpce.example'}\n",
        "replicator.yaml: endpoints.eu-west-1.streams: 'vpce.example' is not an http:// or "
        "https:// URL",
        id="bad-streams-endpoint-url",
    ),
    pytest.param(
        MINIMAL + "endpoints:\n  eu-west-1: https://vpce.example/p?x=1\n",
        "replicator.yaml: endpoints.eu-west-1: 'https://vpce.example/p?x=1' has a query or "
        "fragment — give scheme://host[:port][/path] only",
        id="endpoint-url-with-query",
    ),
    pytest.param(
        MINIMAL + "endpoints:\n  local: http://127.0.0.1:8000\n",
        "replicator.yaml: endpoints.local: 'local' is not an AWS region code",
        id="endpoint-key-not-a-region",
    ),
    pytest.param(
        MINIMAL.replace(TARGET, "targets: []"),
        "replicator.yaml: pairs[0].targets: empty — add at least one entry",
        id="empty-targets",
    ),
    pytest.param(
        "source_region: us-east-1\npairs: []\n",
        "replicator.yaml: pairs: empty — add at least one entry",
        id="empty-pairs",
    ),
    pytest.param(
        "source_region: us-east-1\npairs:\n",
        "replicator.yaml: pairs: empty — use a YAML list",
        id="pairs-without-value",
    ),
    pytest.param(
        with_pair(max_writes_per_second="0"),
        "replicator.yaml: pairs[0].max_writes_per_second: 0 is out of range — use a value above 0",
        id="max-writes-per-second-zero",
    ),
    pytest.param(
        with_pair(max_concurrency="0"),
        "replicator.yaml: pairs[0].max_concurrency: 0 is out of range — use auto",
        id="max-concurrency-too-low",
    ),
    pytest.param(
        with_pair(max_concurrency="5000"),
        "pairs[0].max_concurrency: 5000 is out of range — use auto (adaptive, up to 1024) or a "
        "whole number from 1 to 1024",
        id="max-concurrency-too-high",
    ),
    pytest.param(
        with_pair(max_concurrency="true"),
        "pairs[0].max_concurrency: true is neither auto nor a whole number",
        id="max-concurrency-boolean",
    ),
    pytest.param(
        with_pair(version_attribute="_rep_version"),
        "replicator.yaml: pairs[0].version_attribute: '_rep_version' starts with the metadata "
        "prefix '_rep_' — rename the version attribute or change metadata_prefix",
        id="version-attribute-in-metadata-namespace",
    ),
    pytest.param(
        MINIMAL + "metadata_prefix: ''\n",
        "replicator.yaml: metadata_prefix: empty — give it a value",
        id="empty-metadata-prefix",
    ),
    pytest.param(
        MINIMAL + "mode: both-ways\n",
        "replicator.yaml: mode: 'both-ways' is not a known value — use one of 'one-way' or "
        "'active-active'",
        id="unknown-mode",
    ),
    pytest.param(
        MINIMAL + "web:\n  port: 70000\n",
        "replicator.yaml: web.port: 70000 is out of range — use a value of at most 65535",
        id="port-out-of-range",
    ),
    pytest.param(
        MINIMAL + "dlq_table: replicator-control\n",
        "replicator.yaml: dlq_table: same table as control_table — use a table of its own",
        id="dlq-is-control-table",
    ),
    pytest.param(
        MINIMAL + "control_table: orders\n",
        "replicator.yaml: control_table: 'orders' is a replicated table — use a table of its own",
        id="control-table-is-replicated",
    ),
    pytest.param(
        MINIMAL + "heartbeat:\n  interval_seconds: 0\n",
        "replicator.yaml: heartbeat.interval_seconds: 0 is out of range — use a value above 0",
        id="heartbeat-interval-zero",
    ),
    pytest.param(
        MINIMAL + "heartbeat:\n  interval_seconds: 90\n",
        "replicator.yaml: heartbeat.ready_max_age_seconds: 60 s is not longer than "
        "interval_seconds",
        id="heartbeat-ready-age-below-interval",
    ),
    pytest.param(
        "source_region: us-east-1\npairs:\n  - orders\n",
        "replicator.yaml: pairs[0]: 'orders' is not a mapping — use key: value lines",
        id="pair-not-a-mapping",
    ),
    pytest.param(
        "- source_region: us-east-1\n",
        "replicator.yaml: (top level): a list is not a mapping — start with source_region:",
        id="top-level-not-a-mapping",
    ),
    pytest.param(
        "# nothing here yet\n",
        "replicator.yaml: the file is empty — add source_region and pairs",
        id="empty-file",
    ),
    pytest.param(
        "source_region: us-east-1\npairs: [\n",
        "replicator.yaml: line 3, column 1: invalid YAML (",
        id="yaml-syntax-error",
    ),
    pytest.param(
        with_pair(exclude_attributes="[ssn, version]"),
        "pairs[0].exclude_attributes[1]: 'version' is the version attribute, which the "
        "conflict rule needs — remove it from exclude_attributes",
        id="exclude-version",
    ),
    pytest.param(
        with_pair(exclude_attributes="[expires_at]", ttl_attribute="expires_at"),
        "pairs[0].exclude_attributes[0]: 'expires_at' is the TTL attribute",
        id="exclude-ttl-attribute",
    ),
    pytest.param(
        with_pair(exclude_attributes="[_rep_origin]"),
        "pairs[0].exclude_attributes[0]: '_rep_origin' starts with the metadata prefix '_rep_'",
        id="exclude-metadata",
    ),
    pytest.param(
        with_pair(ttl_deletes="skip"),
        "pairs[0].ttl_deletes: skip needs the table's TTL attribute",
        id="ttl-skip-without-attribute",
    ),
    pytest.param(
        with_pair(ttl_deletes="archive"),
        "pairs[0].ttl_deletes: 'archive' is not a known value — use one of 'replicate' or 'skip'",
        id="ttl-deletes-unknown",
    ),
    pytest.param(
        "mode: active-active\n" + with_pair(filter="{attribute: region, equals: eu}"),
        "pairs[0].filter: a filter needs mode one-way",
        id="filter-active-active",
    ),
    pytest.param(
        with_pair(filter="{all: [{attribute: region, equal: eu}]}"),
        "pairs[0].filter.all[0].equal: unknown key (did you mean equals?)",
        id="filter-unknown-test",
    ),
    pytest.param(
        with_pair(filter="{attribute: tier, equals: gold, in: [silver]}"),
        "pairs[0].filter: 2 tests (equals, in) on attribute 'tier' — give exactly one of",
        id="filter-two-tests",
    ),
    pytest.param(
        with_pair(filter="{any: [{attribute: amount, ge: lots}]}"),
        "pairs[0].filter.any[0].ge: 'lots' is not a number — use a number",
        id="filter-compare-not-a-number",
    ),
    pytest.param(
        MINIMAL + "source_region: eu-west-1\n",
        "replicator.yaml: line 6, column 1: invalid YAML (duplicate key 'source_region') — fix it",
        id="duplicate-yaml-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_each_mistake_is_one_line_naming_field_and_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = load_error(tmp_path, text).replace(
        str(tmp_path / "replicator.yaml"), "replicator.yaml"
    )

    assert expected in message
    assert len(message.splitlines()) == 1
    assert " — " in message


def test_several_mistakes_give_one_line_each(tmp_path: Path) -> None:
    text = "source_region: mars\npairs:\n  - source_table: x\n    targets: []\nwebb: {}\n"

    lines = load_error(tmp_path, text).splitlines()

    assert len(lines) == 4
    assert [line.split(": ")[1] for line in lines] == [
        "source_region",
        "pairs[0].source_table",
        "pairs[0].targets",
        "webb",
    ]


def test_secret_values_never_appear(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "aws_secret_access_key: AKIA-hunter2\nendpoints:\n  eu-west-1: ftp://me:hunter3@h\n"
    )

    message = load_error(tmp_path, text)

    assert "aws_secret_access_key: unknown key" in message
    assert "hunter2" not in message
    assert "hunter3" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found — check the path"):
        load_config(path)


def test_parse_config_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^demo: pairs: missing — add it"):
        parse_config({"source_region": "us-east-1"}, source="demo")


def test_lease_defaults_and_a_write_timeout_that_leaves_no_time_to_renew(tmp_path: Path) -> None:
    lease = load_config(write(tmp_path, MINIMAL)).lease
    assert (lease.duration_seconds, lease.write_timeout_seconds, lease.margin_seconds) == (10, 2, 1)

    message = load_error(
        tmp_path, MINIMAL + "lease: {duration_seconds: 4, write_timeout_seconds: 2}\n"
    )

    assert "lease.write_timeout_seconds" in message
    assert "more than half of duration_seconds 4 s" in message
    assert "raise lease.duration_seconds" in message


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "ftp://host", "x"])
def test_a_bad_status_url_is_one_line_naming_the_option(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^--url: .* is not an http:// URL — use e\.g\. http"):
        status_url(WebConfig(), url)


def test_what_is_replicated_loads_into_a_frozen_filter_tree(tmp_path: Path) -> None:
    text = with_pair(
        exclude_attributes="[ssn, card]",
        ttl_deletes="skip",
        ttl_attribute="expires_at",
        filter="{all: [{attribute: region, in: [eu, uk]}, {not: {attribute: tier, lt: 2}}]}",
    )
    pair = load_config(write(tmp_path, text)).pairs[0]

    assert pair.exclude_attributes == ("ssn", "card")
    assert (pair.ttl_deletes, pair.ttl_attribute) == ("skip", "expires_at")
    assert pair.filter is not None
    with pytest.raises(ValidationError):
        pair.filter.all_ = ()  # type: ignore[union-attr]


# -- Kinesis pairs (DESIGN §4c) ---------------------------------------------------------------

KINESIS_ARN = "arn:aws:kinesis:{region}:123456789012:stream/orders-changes"


def test_a_kinesis_stream_in_another_region_than_the_source_is_refused(tmp_path: Path) -> None:
    arn = KINESIS_ARN.format(region="eu-west-1")
    message = load_error(tmp_path, with_pair(kinesis_stream=arn))
    assert "pairs[0].kinesis_stream" in message
    assert "eu-west-1, not in the source region us-east-1" in message
    assert "\n" not in message


def test_a_kinesis_stream_of_the_source_region_or_by_name_loads(tmp_path: Path) -> None:
    arn = KINESIS_ARN.format(region="us-east-1")
    assert load_config(write(tmp_path, with_pair(kinesis_stream=arn))).pairs[0].kinesis_stream
    named = load_config(write(tmp_path, with_pair(kinesis_stream="orders-changes")))
    assert named.pairs[0].kinesis_stream == "orders-changes"


def test_two_pairs_may_read_one_kinesis_stream(tmp_path: Path) -> None:
    text = """\
    source_region: us-east-1
    pairs:
      - source_table: orders
        kinesis_stream: changes
        targets: [{region: eu-west-1, table: orders}]
      - source_table: customers
        kinesis_stream: arn:aws:kinesis:us-east-1:123456789012:stream/changes
        targets: [{region: eu-west-1, table: customers}]
    """
    config = load_config(write(tmp_path, text))
    assert [p.source_table for p in config.pairs] == ["orders", "customers"]


def test_a_conflicts_table_beside_an_active_active_kinesis_pair_is_refused(
    tmp_path: Path,
) -> None:
    text = "mode: active-active\nconflicts_table: lost-writes\n" + with_pair(
        kinesis_stream="orders-changes"
    )
    message = load_error(tmp_path, text)
    assert "pairs[0].kinesis_stream" in message
    assert "records no conflicts" in message and "remove conflicts_table" in message
    # Left at its default, the pair loads: it simply records no conflicts.
    text = "mode: active-active\n" + with_pair(kinesis_stream="orders-changes")
    assert load_config(write(tmp_path, text)).pairs[0].kinesis_stream == "orders-changes"
