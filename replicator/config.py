"""``replicator.yaml`` loaded into frozen, validated settings.

Every mistake becomes one line of a :class:`ConfigError` (``<file>: <field path>: <what is
wrong> — <how to fix>``), all reported at once so an operator fixes the file in one pass.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from replicator.errors import ConfigError
from replicator.models import Mode

__all__ = [
    "Config",
    "HeartbeatConfig",
    "Pair",
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
_SECRET = re.compile(r"secret|passw|token|credential|private|api_?key|access_?key", re.I)
_USERINFO = re.compile(r"//[^/@]*@")
_EXAMPLE = "see examples/replicator.yaml"

Loc = tuple[int | str, ...]
Problem = tuple[Loc, str, str]  # (field path, what is wrong, how to fix)


def _problem(what: str, fix: str) -> PydanticCustomError:
    # The text travels in ctx, not in the template, so braces in a value are never placeholders.
    return PydanticCustomError("config", "{what}", {"what": what, "fix": fix})


def _quote(value: str) -> str:
    shown = _USERINFO.sub("//***@", value)  # an endpoint URL may carry credentials
    return repr(shown if len(shown) <= 60 else shown[:57] + "...")


def _show(value: object, loc: Loc = ()) -> str:
    if any(isinstance(part, str) and _SECRET.search(part) for part in loc):
        return "the value"
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return str(value).lower()  # YAML spells booleans true and false
    return "a list" if isinstance(value, list) else "a mapping"


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    try:
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
    except ValueError:  # a malformed port
        return False


def _must(ok: Callable[[str], object], what: str, fix: str) -> AfterValidator:
    def check(value: str) -> str:
        if not ok(value):
            raise _problem(what.format(_quote(value)), fix)
        return value

    return AfterValidator(check)


def _tombstone_ttl(value: object) -> int:
    fix = "use whole seconds or a number with d, h, m or s, e.g. 7d"
    match = _DURATION.match(value.lower()) if isinstance(value, str) else None
    if match:
        seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
        shown = f"{value} = {seconds} s" if match[2] else f"{seconds} s"
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds, shown = value, f"{value} s"
    else:
        raise _problem(f"{_show(value)} is not a duration", fix)
    # A tombstone must outlive every stream record that could still resurrect the item.
    if seconds <= STREAM_RETENTION_SECONDS:
        what = f"{shown} is not longer than the 24 h stream retention"
        raise _problem(what, f"set it above {STREAM_RETENTION_SECONDS} s (default 7d)")
    return seconds


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
    str, _must(_is_url, "{} is not an http:// or https:// URL", "use e.g. http://127.0.0.1:8000")
]
NonEmpty = Annotated[str, _must(str.strip, "empty", "give it a value")]
TombstoneTtl = Annotated[int, BeforeValidator(_tombstone_ttl)]


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    region: Region
    table: TableName


class Pair(BaseModel):
    # By name too, so code can say Pair(tombstone_ttl_seconds=...) where YAML says tombstone_ttl.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True)

    source_table: TableName
    version_attribute: NonEmpty = "version"
    targets: list[Target] = Field(min_length=1)
    tombstone_ttl_seconds: TombstoneTtl = Field(
        default=DEFAULT_TOMBSTONE_TTL_SECONDS, alias="tombstone_ttl"
    )
    max_concurrency: int = Field(default=32, ge=1, le=1024)
    max_writes_per_second: float | None = Field(default=None, gt=0)


class WebConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    host: NonEmpty = "127.0.0.1"  # loopback: exposing the dashboard is an explicit choice
    port: int = Field(default=9464, ge=0, le=65535)


class HeartbeatConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    interval_seconds: float = Field(default=1.0, gt=0)
    key_prefix: NonEmpty = "__replicator_heartbeat__"
    ready_max_age_seconds: float = Field(default=60.0, gt=0)


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source_region: Region
    mode: Mode = Mode.ONE_WAY
    endpoints: dict[Region, EndpointUrl] = Field(default_factory=dict)
    control_table: TableName = "replicator-control"
    dlq_table: TableName = "replicator-dlq"
    metadata_prefix: NonEmpty = "_rep_"
    pairs: list[Pair] = Field(min_length=1)
    web: WebConfig = WebConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()

    def endpoint_for(self, region: str) -> str | None:
        return self.endpoints.get(region)

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
            what = f"{_quote(pair.version_attribute)} starts with the metadata prefix {prefix!r}"
            fix = "rename the version attribute or change metadata_prefix"
            found.append((("pairs", i, "version_attribute"), what, fix))
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
                what = f"{name} is listed twice (also {_path(first)})"
                found.append((at, what, "remove the duplicate or pick another table"))
    home = set(sources) | {table for region, table in targets if region == config.source_region}
    for field in ("control_table", "dlq_table"):
        if (table := getattr(config, field)) in home:
            what, fix = f"{table!r} is a replicated table", "use a table of its own"
            found.append(((field,), what, fix))
    if config.dlq_table == config.control_table:
        found.append((("dlq_table",), "same table as control_table", "use a table of its own"))
    heartbeat = config.heartbeat
    if heartbeat.ready_max_age_seconds <= heartbeat.interval_seconds:
        # Otherwise readiness would flap between two heartbeats.
        what = f"{heartbeat.ready_max_age_seconds:g} s is not longer than interval_seconds"
        fix = "set it to several heartbeat intervals"
        found.append((("heartbeat", "ready_max_age_seconds"), what, fix))
    return found


_MISSING_EXAMPLES = {
    "source_region": "source_region: us-east-1",
    "pairs": "pairs: [{source_table: orders, targets: [{region: eu-west-1, table: orders}]}]",
    "source_table": "source_table: orders",
    "targets": "targets: [{region: eu-west-1, table: orders}]",
    "region": "region: eu-west-1",
    "table": "table: orders",
}
_MAPPING = ("is not a mapping", "use key: value lines indented under it")
_TYPE_HINTS = {
    "int": ("is not a whole number", "use a whole number, e.g. 32"),
    "float": ("is not a number", "use a number, e.g. 100"),
    "bool": ("is not true or false", "use true or false"),
    "string": ("is not text", "use text; quote it if YAML reads it as a number or boolean"),
    "list": ("is not a list", "use a YAML list, one '- ' entry per line"),
    "dict": _MAPPING,
    "model": _MAPPING,
}
_NESTED: dict[str, type[BaseModel]] = {
    "pairs": Pair,
    "targets": Target,
    "web": WebConfig,
    "heartbeat": HeartbeatConfig,
}
_BOUNDS = (("gt", "above"), ("ge", "of at least"), ("lt", "below"), ("le", "of at most"))


def _path(loc: Loc) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # a bad dict key: its own message names it
            path += f".{part}" if path else part
    return path or "(top level)"


def _explain(error: ErrorDetails) -> tuple[str, str]:
    loc: Loc = tuple(error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    shown = _show(error.get("input"), loc)
    if kind == "config":
        return str(ctx["what"]), str(ctx["fix"])
    if kind == "missing":
        example = _MISSING_EXAMPLES.get(str(loc[-1]) if loc else "")
        return "missing", f"add it, e.g. {example}" if example else "add it"
    if kind == "extra_forbidden":
        parent = next((part for part in reversed(loc[:-1]) if isinstance(part, str)), "")
        fields = _NESTED.get(parent, Config).model_fields
        allowed = [field.alias or name for name, field in fields.items()]
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        what = f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
        return what, f"remove it (allowed: {', '.join(allowed)})"
    if kind == "too_short":
        return "empty", "add at least one entry"
    if bounds := [f"{word} {ctx[key]:g}" for key, word in _BOUNDS if key in ctx]:
        return f"{shown} is out of range", f"use a value {bounds[0]}"
    if kind == "enum":
        return f"{shown} is not a known value", f"use one of {ctx.get('expected')}"
    if hint := _TYPE_HINTS.get(kind.split("_")[0]):
        # A key with nothing after it reads as null in YAML: it is empty, not of a wrong type.
        return "empty" if error.get("input") is None else f"{shown} {hint[0]}", hint[1]
    return error["msg"], f"fix the value ({_EXAMPLE})"


def _error_lines(source: str, exc: ValidationError) -> list[str]:
    problems: list[Problem] = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        if error["type"] == "config_rules":
            problems += [(loc + rel, what, fix) for rel, what, fix in error["ctx"]["problems"]]
        else:
            problems.append((loc, *_explain(error)))
    return [f"{source}: {_path(loc)}: {what} — {fix}" for loc, what, fix in problems]


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
        raise ConfigError(f"{source}: the file is empty — add source_region and pairs ({_EXAMPLE})")
    if not isinstance(data, dict):
        what = f"{_show(data)} is not a mapping"
        raise ConfigError(f"{source}: (top level): {what} — start with source_region: and pairs:")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        # from None: pydantic's own text echoes input values, secrets included.
        raise ConfigError("\n".join(_error_lines(source, exc))) from None


def load_config(path: str | Path) -> Config:
    """Read and validate ``replicator.yaml``; every problem is raised as one ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found — check the path ({_EXAMPLE})") from None
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{source}: cannot read it ({reason}) — pass a readable YAML file"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        raise ConfigError(
            f"{source}: {where}: invalid YAML ({exc.problem}) — fix it there"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({exc}) — fix the syntax") from None
    return parse_config(data, source=source)
