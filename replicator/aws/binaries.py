"""Binary values (``B``, ``BS``) as DynamoDB's JSON has them: base64 text, end to end.

Stream records, scans, Lambda events and DLQ entries all carry binaries as the wire's
base64 text, and nothing converts them to bytes on the way: a key is the same text
whichever path read it, so it names the same item (``models.item_key``). Only what
needs the value itself turns the text into bytes: a size (``pipeline.itemsize``), a
comparison of Python values (``apply.rule.visible``), a fixture built from bytes.

boto3's (de)serializers are imported on first use: they cost 0.1 s of start-up that
``replicator run``'s writes do not need.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping
from typing import Any


def binary_size(text: str) -> int:
    """How many bytes the base64 ``text`` holds (what DynamoDB counts), without decoding it."""
    return len(text) * 3 // 4 - text[-2:].count("=")


@functools.cache
def wire_deserializer() -> Callable[[Mapping[str, Any]], Any]:
    """DynamoDB JSON (binaries as base64 text) to Python values (binaries as ``Binary``)."""
    from boto3.dynamodb.types import Binary, TypeDeserializer

    class _Deserializer(TypeDeserializer):  # type: ignore[misc]  # boto3 has no types
        def _deserialize_b(self, value: str) -> Binary:
            return Binary(base64.b64decode(value))

        def _deserialize_bs(self, value: list[str]) -> set[Binary]:
            return {self._deserialize_b(v) for v in value}

    deserialize: Callable[[Mapping[str, Any]], Any] = _Deserializer().deserialize
    return deserialize


@functools.cache
def wire_serializer() -> Callable[[Any], dict[str, Any]]:
    """Python values (binaries as bytes) to DynamoDB JSON (binaries as base64 text)."""
    from boto3.dynamodb.types import TypeSerializer

    class _Serializer(TypeSerializer):  # type: ignore[misc]  # boto3 has no types
        def _serialize_b(self, value: Any) -> str:
            return base64.b64encode(bytes(value)).decode()

        def _serialize_bs(self, value: Any) -> list[str]:
            return [self._serialize_b(v) for v in value]

    serialize: Callable[[Any], dict[str, Any]] = _Serializer().serialize
    return serialize
