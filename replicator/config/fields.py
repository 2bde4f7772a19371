"""The field types of ``replicator.yaml``: regions, table names, URLs, durations, limits.

Each refuses a bad value with the one-line message and fix the config error shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, TypeAdapter

from replicator.aws.http_pool import AUTO_CEILING as MAX_CONCURRENCY
from replicator.config.messages import problem, quote, show

STREAM_RETENTION_SECONDS = 24 * 3600
DEFAULT_TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600

REGION_CODE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d+$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
# A Kinesis stream's name, or its ARN: arn:<partition>:kinesis:<region>:<account>:stream/<name>.
_STREAM_NAME = r"[A-Za-z0-9_.-]{1,128}"
_KINESIS_STREAM = re.compile(
    rf"^(?:{_STREAM_NAME}|arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{{12}}:stream/{_STREAM_NAME})$"
)
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


Region = Annotated[
    str, _must(REGION_CODE.match, "{} is not an AWS region code", "use e.g. us-east-1")
]
TableName = Annotated[
    str,
    _must(
        _TABLE.match,
        "{} is not a valid DynamoDB table name",
        "use 3 to 255 characters from a-z A-Z 0-9 _ . -",
    ),
]
KinesisStream = Annotated[
    str,
    _must(
        _KINESIS_STREAM.match,
        "{} is neither a Kinesis stream name nor a stream ARN",
        "use the name (1 to 128 of a-z A-Z 0-9 _ . -) or its arn:aws:kinesis:...:stream/NAME",
    ),
]


def stream_name(stream: str) -> str:
    """A ``kinesis_stream`` setting's stream name (the requests name it so: aws.endpoints)."""
    return stream.rsplit("stream/", 1)[-1] if stream.startswith("arn:") else stream


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
endpoint_url: TypeAdapter[str] = TypeAdapter(EndpointUrl)
NonEmpty = Annotated[str, _must(str.strip, "empty", "give it a value")]
TombstoneTtl = Annotated[int, BeforeValidator(_tombstone_ttl)]
# "auto": adapted to the target's round trip and throttling; a number pins it.
Concurrency = Annotated[int | Literal["auto"], BeforeValidator(_concurrency)]
