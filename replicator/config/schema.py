"""``replicator.yaml`` loaded into frozen, validated settings.

Every mistake becomes one line of a :class:`ConfigError` (``<file>: <field path>: <what is
wrong> — <how to fix>``), all reported at once so an operator fixes the file in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from replicator.aws.http_pool import AUTO_CEILING as MAX_CONCURRENCY
from replicator.config.credentials import RegionCredentials
from replicator.config.filters import AttributeTest, Filter
from replicator.config.messages import (
    EXAMPLE,
    TAG,
    Loc,
    Problem,
    error_lines,
    path,
    problem,
    quote,
    show,
)
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

STREAM_RETENTION_SECONDS = 24 * 3600
DEFAULT_TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d+$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_DURATION = re.compile(r"^\s*(\d+)\s*([dhms]?)\s*$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    try:
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
    except ValueError:  # a malformed port
        return False


def _must(ok: Callable[[str], object], what: str, fix: str) -> AfterValidator:
    def check(value: str) -> str:
        if not ok(value):
            raise problem(what.format(quote(value)), fix)
        return value

    return AfterValidator(check)


def duration_seconds(text: str) -> int | None:
    """Seconds in ``7d``, ``12h``, ``30m``, ``90s`` or ``600``; None when it is not a duration."""
    match = _DURATION.match(text.lower())
    return int(match[1]) * _UNIT_SECONDS[match[2]] if match else None


MAX_TOMBSTONE_TTL_SECONDS = 3650 * 86_400


def _tombstone_ttl(value: object) -> int:
    fix = "use whole seconds or a number with d, h, m or s, e.g. 7d"
    parsed = duration_seconds(value) if isinstance(value, str) else None
    if parsed is not None:
        seconds = parsed
        shown = f"{value} = {seconds} s" if str(value).strip()[-1:].isalpha() else f"{seconds} s"
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds, shown = value, f"{value} s"
    else:
        raise problem(f"{show(value)} is not a duration", fix)
    # A tombstone must outlive every stream record that could still resurrect the item.
    if seconds <= STREAM_RETENTION_SECONDS:
        what = f"{shown} is not longer than the 24 h stream retention"
        raise problem(what, f"set it above {STREAM_RETENTION_SECONDS} s (default 7d)")
    if seconds > MAX_TOMBSTONE_TTL_SECONDS:  # an expiry DynamoDB would refuse on every delete
        raise problem(f"{shown} is too long", "use at most 3650d (ten years)")
    return seconds


def _concurrency(value: object) -> int | str:
    most = MAX_CONCURRENCY
    fix = f"use auto (adaptive, up to {most}) or a whole number from 1 to {most}"
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise problem(f"{show(value)} is neither auto nor a whole number", fix)
    if not 1 <= value <= MAX_CONCURRENCY:
        raise problem(f"{value} is out of range", fix)
    return value


Region = Annotated[str, _must(_REGION.match, "{} is not an AWS region code", "use e.g. us-east-1")]
TableName = Annotated[
    str,
    _must(
        _TABLE.match,
        "{} is not a valid DynamoDB table name",
        "use 3 to 255 characters from a-z A-Z 0-9 _ . -",
    ),
]
EndpointUrl = Annotated[
    str,
    _must(_is_url, "{} is not an http:// or https:// URL", "use e.g. http://127.0.0.1:8000"),
    # The signer signs the path only: a query would be sent unsigned and refused.
    _must(
        lambda url: not urlsplit(url).query and not urlsplit(url).fragment,
        "{} has a query or fragment",
        "give scheme://host[:port][/path] only",
    ),
]
_endpoint_url: TypeAdapter[str] = TypeAdapter(EndpointUrl)
NonEmpty = Annotated[str, _must(str.strip, "empty", "give it a value")]
TombstoneTtl = Annotated[int, BeforeValidator(_tombstone_ttl)]
# "auto": adapted to the target's round trip and throttling; a number pins it.
Concurrency = Annotated[int | Literal["auto"], BeforeValidator(_concurrency)]


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
    """One region's endpoints: ``region: URL`` (one server for both, as moto and DynamoDB
    Local are) or ``region: {dynamodb: URL, streams: URL}``; a service left out is resolved
    as botocore would (``replicator.aws.endpoints``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dynamodb: EndpointUrl | None = None
    streams: EndpointUrl | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_url_for_both(cls, value: object) -> object:
        if isinstance(value, str):
            url = _endpoint_url.validate_python(value)
            return {"dynamodb": url, "streams": url}
        return value

    def url(self, service: str) -> str | None:
        """The URL named for ``service`` (``dynamodb``, ``dynamodbstreams``), if any."""
        return self.streams if service == "dynamodbstreams" else self.dynamodb

    @model_validator(mode="after")
    def _names_one(self) -> Self:
        if self.dynamodb is None and self.streams is None:
            raise problem("names no endpoint", "add dynamodb: URL and/or streams: URL")
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
        if problems := _rule_problems(self):
            ctx = {"count": len(problems), "problems": problems}
            raise PydanticCustomError("config_rules", "{count} rule(s) broken", ctx)
        return self


def _rule_problems(config: Config) -> list[Problem]:
    found: list[Problem] = []
    sources: dict[str, int] = {}
    targets: dict[tuple[str, str], Loc] = {}
    for i, pair in enumerate(config.pairs):
        if pair.version_attribute.startswith(prefix := config.metadata_prefix):
            what = f"{quote(pair.version_attribute)} starts with the metadata prefix {prefix!r}"
            fix = "rename the version attribute or change metadata_prefix"
            found.append((("pairs", i, "version_attribute"), what, fix))
        found += _selection_problems(config, pair, i)
        if (first_pair := sources.setdefault(pair.source_table, i)) != i:
            what = f"{pair.source_table!r} is already replicated by pairs[{first_pair}]"
            found.append((("pairs", i, "source_table"), what, "merge the targets into one pair"))
        for j, target in enumerate(pair.targets):
            at: Loc = ("pairs", i, "targets", j)
            key, name = (target.region, target.table), f"{target.region}/{target.table}"
            if key == (config.source_region, pair.source_table):
                fix = "point the target at another region or table"
                found.append((at, f"{name} is the source table itself", fix))
            elif (first := targets.setdefault(key, at)) != at:
                # Across pairs too: two sources merged into one table overwrite each other.
                what = f"{name} is listed twice (also {path(first)})"
                found.append((at, what, "remove the duplicate or pick another table"))
    for region in config.credentials.keys() - set(config.regions):
        what = f"{region} is neither the source region nor a target's"
        found.append((("credentials", region), what, "remove it or correct the region"))
    home = set(sources) | {table for region, table in targets if region == config.source_region}
    for field in ("control_table", "dlq_table", "conflicts_table"):
        if (table := getattr(config, field)) in home:
            what, fix = f"{table!r} is a replicated table", "use a table of its own"
            found.append(((field,), what, fix))
    if config.dlq_table == config.control_table:
        found.append((("dlq_table",), "same table as control_table", "use a table of its own"))
    if config.conflicts_table in (config.control_table, config.dlq_table):
        what = "same table as control_table or dlq_table"
        found.append((("conflicts_table",), what, "use a table of its own"))
    heartbeat = config.heartbeat
    if heartbeat.ready_max_age_seconds <= heartbeat.interval_seconds:
        # Otherwise readiness would flap between two heartbeats.
        what = f"{heartbeat.ready_max_age_seconds:g} s is not longer than interval_seconds"
        fix = "set it to several heartbeat intervals"
        found.append((("heartbeat", "ready_max_age_seconds"), what, fix))
    lease = config.lease
    if lease.write_timeout_seconds + lease.margin_seconds > lease.duration_seconds / 2:
        # The rest of the lease is the time left for renewals before the active fences itself.
        what = (
            f"{lease.write_timeout_seconds:g} s plus margin_seconds {lease.margin_seconds:g} s "
            f"is more than half of duration_seconds {lease.duration_seconds:g} s"
        )
        fix = "raise lease.duration_seconds or lower the write timeout or margin"
        found.append((("lease", "write_timeout_seconds"), what, fix))
    return found


def _selection_problems(config: Config, pair: Pair, i: int) -> list[Problem]:
    found: list[Problem] = []
    for j, name in enumerate(pair.exclude_attributes):
        at: Loc = ("pairs", i, "exclude_attributes", j)
        if name == pair.version_attribute:
            what = f"{quote(name)} is the version attribute, which the conflict rule needs"
            found.append((at, what, "remove it from exclude_attributes"))
        elif name == pair.ttl_attribute:
            what = f"{quote(name)} is the TTL attribute, which targets need to expire items"
            found.append((at, what, "remove it from exclude_attributes"))
        elif name.startswith(config.metadata_prefix):
            what = f"{quote(name)} starts with the metadata prefix {config.metadata_prefix!r}"
            found.append((at, what, "remove it: metadata is never copied as user data"))
    if pair.ttl_deletes == "skip" and pair.ttl_attribute is None:
        what = "skip needs the table's TTL attribute, so verify can tell an expired item"
        fix = "add ttl_attribute: <the attribute the table's TimeToLive uses>"
        found.append((("pairs", i, "ttl_deletes"), what, fix))
    if pair.filter is not None and config.mode is not Mode.ONE_WAY:
        # Each target holds filter(source): only one-way mode has a single source.
        what = (
            "a filter needs mode one-way: in active-active mode every region is a source, "
            "and a write filtered out as a delete would erase the key in the other regions"
        )
        found.append((("pairs", i, "filter"), what, "remove the filter or set mode: one-way"))
    return found


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
    model = RegionEndpoints if _REGION.match(parent) else _NESTED.get(parent, Config)
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
