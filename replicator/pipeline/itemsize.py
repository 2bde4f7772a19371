"""How large DynamoDB counts an item: what keeps a DLQ entry under the limit.

DynamoDB's rule: an item's size is the sum of its attribute names (UTF-8) and values;
a string or binary counts its bytes (a binary's, not its base64 text's), a number
about one byte per two significant digits plus one, a boolean or null one byte, and a
list or map three bytes plus one per element on top of its elements. The limit is 400 KB
(409 600 bytes) including everything. The figure here follows that rule closely enough
to leave a DLQ entry room to spare; it also gives the metadata headroom documented in
the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replicator.aws.binaries import binary_size

MAX_ITEM_BYTES = 400 * 1024
_NUMBER_BYTES = 21  # DynamoDB's largest number: 38 significant digits


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The size of a wire-format item (``{"name": {"S": "value"}}``) in bytes."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "B":
        return binary_size(data)
    if kind == "N":
        return _number_size(str(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in data)
    if kind == "BS":
        return sum(binary_size(b) for b in data)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    return len(repr(data).encode())  # an unknown type: DynamoDB will name it


def _number_size(text: str) -> int:
    digits = sum(c.isdigit() for c in text.lstrip("-+0").split("e")[0].split("E")[0])
    return min(_NUMBER_BYTES, (digits + 1) // 2 + 1)
