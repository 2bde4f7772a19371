"""Stream records in botocore's shape: DynamoDB JSON's base64 binaries decoded to bytes.

Both the run path's client (``json_client``) and the Lambda handler's event reader
(``lambda_mode.event``) hand the pipeline records this way, so a change is the same value
whichever engine read it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

_IMAGES = ("Keys", "NewImage", "OldImage")


def decoded_record(record: dict[str, Any]) -> dict[str, Any]:
    body = record.get("dynamodb")
    if not isinstance(body, dict):
        return record  # to_change dead-letters it with the reason
    images = {name: _binary(body[name]) for name in _IMAGES if isinstance(body.get(name), dict)}
    return {**record, "dynamodb": {**body, **images}}


def _binary(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _value(value) for name, value in item.items()}


def _value(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": _bytes(inner)}
    if kind == "BS" and isinstance(inner, list):
        return {"BS": [_bytes(v) for v in inner]}
    if kind == "M" and isinstance(inner, dict):
        return {"M": _binary(inner)}
    if kind == "L" and isinstance(inner, list):
        return {"L": [_value(v) for v in inner]}
    return value


def _bytes(text: Any) -> Any:
    # Text that is not base64 stays as it came: the target refuses it and the record
    # is dead-lettered with DynamoDB's own reason.
    if not isinstance(text, str):
        return text
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text
