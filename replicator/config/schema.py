"""``replicator.yaml`` loaded into frozen, validated settings.

Every mistake becomes one line of a :class:`ConfigError` (``<file>: <field path>: <what is
wrong> — <how to fix>``), all reported at once so an operator fixes the file in one pass.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from replicator.config.credentials import RegionCredentials
from replicator.config.fields import (
    DEFAULT_TOMBSTONE_TTL_SECONDS,
    REGION_CODE,
    Concurrency,
    EndpointUrl,
    KinesisStream,
    NonEmpty,
    Region,
    TableName,
    TombstoneTtl,
    endpoint_url,
)
from replicator.config.filters import AttributeTest, Filter
from replicator.config.messages import (
    EXAMPLE,
    TAG,
    error_lines,
    problem,
    show,
)
from replicator.config.rules import rule_problems
from replicator.errors import ConfigError
from replicator.models import Mode

__all__ = [
    "Config",
    "HeartbeatConfig",
    "LeaseConfig",
    "Pair",
    "RegionEndpoints",
    "Target",
    "WebConfig",
    "load_config",
    "parse_config",
]


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    region: Region
    table: TableName


class Pair(BaseModel):
    # By name too, so code can say Pair(tombstone_ttl_seconds=...) where YAML says tombstone_ttl.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, allow_inf_nan=False
    )

    source_table: TableName
    version_attribute: NonEmpty = "version"
    targets: list[Target] = Field(min_length=1)
    tombstone_ttl_seconds: TombstoneTtl = Field(
        default=DEFAULT_TOMBSTONE_TTL_SECONDS, alias="tombstone_ttl"
    )
    max_concurrency: Concurrency = "auto"
    max_writes_per_second: float | None = Field(default=None, gt=0)
    # What is replicated (README "What is replicated"): top-level attribute names never
    # written to targets, TTL deletes replicated or left to each target's own TTL, and
    # the items each target holds (one-way mode).
    exclude_attributes: tuple[NonEmpty, ...] = ()
    ttl_deletes: Literal["replicate", "skip"] = "replicate"
    ttl_attribute: NonEmpty | None = None
    filter: Filter | None = None
    # Read this table's changes from its Kinesis streaming destination (DESIGN §4c) instead
    # of its DynamoDB stream: a stream name, or an ARN in the source region's account.
    kinesis_stream: KinesisStream | None = None


class WebConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    host: NonEmpty = "127.0.0.1"  # loopback: exposing the dashboard is an explicit choice
    port: int = Field(default=9464, ge=0, le=65535)


class HeartbeatConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    interval_seconds: float = Field(default=1.0, gt=0)
    key_prefix: NonEmpty = "__replicator_heartbeat__"
    ready_max_age_seconds: float = Field(default=60.0, gt=0)


class LeaseConfig(BaseModel):
    """The lease that makes one process per source table the active one (DESIGN §6)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # A standby takes over this long after the active process stopped renewing.
    duration_seconds: float = Field(default=10.0, gt=0, le=3600)
    # The longest a target write or checkpoint may take; the active stops starting them
    # this long (plus the margin) before its lease could be taken.
    write_timeout_seconds: float = Field(default=2.0, gt=0)
    margin_seconds: float = Field(default=1.0, ge=0)


class RegionEndpoints(BaseModel):
    """One region's endpoints: ``region: URL`` (one server for every service, as moto is) or
    ``region: {dynamodb: URL, streams: URL, kinesis: URL}``; a service left out is resolved
    as botocore would (``replicator.aws.endpoints``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dynamodb: EndpointUrl | None = None
    streams: EndpointUrl | None = None
    kinesis: EndpointUrl | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_url_for_all(cls, value: object) -> object:
        if isinstance(value, str):
            url = endpoint_url.validate_python(value)
            return {"dynamodb": url, "streams": url, "kinesis": url}
        return value

    def url(self, service: str) -> str | None:
        """The URL named for ``service`` (``dynamodb``, ``dynamodbstreams``, ``kinesis``)."""
        if service == "dynamodbstreams":
            return self.streams
        return self.kinesis if service == "kinesis" else self.dynamodb

    @model_validator(mode="after")
    def _names_one(self) -> Self:
        if self.dynamodb is None and self.streams is None and self.kinesis is None:
            raise problem("names no endpoint", "add dynamodb:, streams: and/or kinesis: URLs")
        return self


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    source_region: Region
    mode: Mode = Mode.ONE_WAY
    endpoints: dict[Region, RegionEndpoints] = Field(default_factory=dict)
    credentials: dict[Region, RegionCredentials] = Field(default_factory=dict)
    control_table: TableName = "replicator-control"
    dlq_table: TableName = "replicator-dlq"
    # Active-active only: the conflict feed (DESIGN §4b), in source_region like the DLQ.
    conflicts_table: TableName = "replicator-conflicts"
    metadata_prefix: NonEmpty = "_rep_"
    pairs: list[Pair] = Field(min_length=1)
    web: WebConfig = WebConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    lease: LeaseConfig = LeaseConfig()
    log_format: Literal["text", "json"] = "text"  # --log-format overrides it

    def endpoint_for(self, region: str, service: str = "dynamodb") -> str | None:
        """The URL this file names for ``service`` (dynamodb, dynamodbstreams) in ``region``."""
        entry = self.endpoints.get(region)
        return entry.url(service) if entry else None

    @property
    def regions(self) -> list[str]:
        """The source region first, then every target region, each once, in config order."""
        ordered = [self.source_region, *(t.region for p in self.pairs for t in p.targets)]
        return list(dict.fromkeys(ordered))

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        # Rules across fields run once every field is valid; all are reported together.
        if problems := rule_problems(self):
            ctx = {"count": len(problems), "problems": problems}
            raise PydanticCustomError("config_rules", "{count} rule(s) broken", ctx)
        return self


_NESTED: dict[str, type[BaseModel]] = {
    "pairs": Pair,
    "targets": Target,
    "web": WebConfig,
    "heartbeat": HeartbeatConfig,
    "lease": LeaseConfig,
    TAG + "test": AttributeTest,  # a filter's test, as its tagged union names it
}


def _allowed_keys(parent: str) -> list[str]:
    # A key under endpoints.<region> has the region as its parent.
    model = RegionEndpoints if REGION_CODE.match(parent) else _NESTED.get(parent, Config)
    fields = model.model_fields
    return [field.alias or name for name, field in fields.items()]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a repeated key, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                problem = f"duplicate key {key!r}"
                raise yaml.MarkedYAMLError(problem=problem, problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_config(data: object, *, source: str = "replicator.yaml") -> Config:
    """Validate parsed YAML (or a dict built in code) into a :class:`Config`."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty — add source_region and pairs ({EXAMPLE})")
    if not isinstance(data, dict):
        what = f"{show(data)} is not a mapping"
        raise ConfigError(f"{source}: (top level): {what} — start with source_region: and pairs:")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        # from None: pydantic's own text echoes input values, secrets included.
        raise ConfigError("\n".join(error_lines(source, exc, _allowed_keys))) from None


def load_config(path: str | Path, *, source: str | None = None) -> Config:
    """Read and validate ``replicator.yaml``; every problem is raised as one ConfigError.

    ``source`` names the file in errors (default: its path).
    """
    source = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found — check the path ({EXAMPLE})") from None
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{source}: cannot read it ({reason}) — pass a readable YAML file"
        ) from None
    return parse_config_text(text, source=source)


def parse_config_text(text: str, *, source: str) -> Config:
    """Validate YAML text; ``source`` (a path, or the variable that held it) starts each error."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except RecursionError:
        raise ConfigError(
            f"{source}: nested too deeply to read — replicator.yaml is a few levels deep "
            f"({EXAMPLE})"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        raise ConfigError(
            f"{source}: {where}: invalid YAML ({exc.problem}) — fix it there"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({exc}) — fix the syntax") from None
    return parse_config(data, source=source)
