"""One conditional PutItem per change: the conflict rule applied by DynamoDB itself."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from replicator.apply.condition import build_condition
from replicator.apply.rule import decide, is_version_regression
from replicator.aws import classify, is_conditional_check_failed
from replicator.errors import RecordError, RequestError
from replicator.itemsize import MAX_ITEM_BYTES, item_size
from replicator.models import Change, Meta, Mode, Outcome, WireItem, stored_from_item

log = logging.getLogger(__name__)


def target_item(change: Change, *, meta: Meta, expires_at: int) -> WireItem:
    """The item written to a target: user data plus fresh metadata, or a tombstone."""
    incoming = change.incoming
    stamp: WireItem = {
        meta.version: {"N": str(incoming.version)},
        meta.origin: {"S": incoming.origin},
        meta.rep_version: {"N": str(incoming.version)},
        meta.seq: {"S": incoming.seq},
    }
    if change.item is None:
        return {
            **change.keys,
            **stamp,
            meta.deleted: {"BOOL": True},
            meta.expires: {"N": str(expires_at)},
        }
    user_data = {k: v for k, v in change.item.items() if not k.startswith(meta.prefix)}
    return {**user_data, **stamp}


def request_shape(request: Mapping[str, Any]) -> dict[str, Any]:
    """A PutItem request without its values: attribute names and types, the expression."""

    def types(values: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        return {name: next(iter(value), "?") for name, value in values.items()}

    return {
        **{k: v for k, v in request.items() if isinstance(v, str)},
        "Item": types(request.get("Item", {})),
        "ExpressionAttributeNames": request.get("ExpressionAttributeNames", {}),
        "ExpressionAttributeValues": types(request.get("ExpressionAttributeValues", {})),
    }


class ConditionalWriter:
    """Writes changes into one target table with the LWW condition."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        region: str,
        meta: Meta,
        mode: Mode,
        tombstone_ttl_seconds: int,
        on_version_regression: Callable[[Change], None] | None = None,
    ) -> None:
        self._client = client
        self.table = table
        self.region = region
        self._meta = meta
        self._mode = mode
        self._ttl = tombstone_ttl_seconds
        self._on_regression = on_version_regression

    async def put(self, change: Change, *, now: float) -> Outcome:
        """Apply ``change``; ConditionalCheckFailed becomes SUPERSEDED or DUPLICATE.

        Raises ``RecordError`` for an item too large to write, an ``AwsError`` (with
        ``retryable``) for anything else; a ``RequestError`` is logged with the request's
        shape first, because it is a bug in replicator.
        """
        condition = build_condition(
            change.incoming, meta=self._meta, here=self.region, mode=self._mode
        )
        item = target_item(change, meta=self._meta, expires_at=int(now) + self._ttl)
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            raise RecordError(
                f"item too large: {size} bytes with replication metadata, over DynamoDB's "
                f"{MAX_ITEM_BYTES}"
            )
        request = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": condition.expression,
            "ExpressionAttributeNames": condition.names,
            "ExpressionAttributeValues": condition.values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            await self._client.put_item(**request)
        except ClientError as exc:
            if not is_conditional_check_failed(exc):
                error = classify(exc)
                if isinstance(error, RequestError):
                    log.critical(
                        "BUG: %s refused the request replicator built (%s); request shape "
                        "without values: %s",
                        self.region,
                        error,
                        request_shape(request),
                    )
                raise error from exc
            stored = stored_from_item(exc.response.get("Item"), self._meta)
            verdict = decide(stored, change.incoming, here=self.region, mode=self._mode)
            if self._on_regression and is_version_regression(
                stored, change.incoming, here=self.region, mode=self._mode
            ):
                self._on_regression(change)
            return Outcome.DUPLICATE if verdict is Outcome.DUPLICATE else Outcome.SUPERSEDED
        except Exception as exc:
            raise classify(exc) from exc
        return Outcome.APPLIED
