"""Builders for DynamoDB stream records in the wire format, for tests."""

from __future__ import annotations

from typing import Any

from replicator.models import WireItem


def image(
    key: str,
    version: int | None,
    *,
    origin: str | None = None,
    rep_version: int | None = None,
    tombstone: bool = False,
    **data: str,
) -> WireItem:
    item: WireItem = {"pk": {"S": key}}
    if version is not None:
        item["version"] = {"N": str(version)}
    if origin is not None:
        item["_rep_origin"] = {"S": origin}
        item["_rep_version"] = {"N": str(version if rep_version is None else rep_version)}
        item["_rep_seq"] = {"S": "1".zfill(40)}
    if tombstone:
        item["_rep_deleted"] = {"BOOL": True}
    for name, value in data.items():
        item[name] = {"S": value}
    return item


def record(
    event: str,
    seq: int,
    *,
    new: WireItem | None = None,
    old: WireItem | None = None,
    created_at: float = 1_700_000_000.0,
    service: bool = False,
) -> dict[str, Any]:
    key_source = new if new is not None else old
    assert key_source is not None
    body: dict[str, Any] = {
        "Keys": {"pk": key_source["pk"]},
        "SequenceNumber": str(seq),
        "ApproximateCreationDateTime": created_at,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    result: dict[str, Any] = {"eventName": event, "dynamodb": body, "awsRegion": "us-east-1"}
    if service:
        result["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    return result
