"""One conditional PutItem per change: the conflict rule applied by DynamoDB itself."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from replicator.apply.condition import build_condition
from replicator.apply.conflict import Loss, lost_write
from replicator.apply.rule import is_version_regression
from replicator.apply.rulek import TIE, judge
from replicator.apply.selection import EVERYTHING, Selection
from replicator.apply.ties import SourceItems, resolved
from replicator.aws.classify import classify, is_conditional_check_failed
from replicator.aws.json_client import DynamoDB
from replicator.errors import ConfigError, RequestError
from replicator.models import Change, Meta, Mode, Outcome, WireItem, stored_from_item
from replicator.stream.kv import to_wire

if TYPE_CHECKING:
    from replicator.models import TargetRef
    from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


def target_item(
    change: Change, *, meta: Meta, expires_at: int, selection: Selection = EVERYTHING
) -> WireItem:
    """The item written to a target: user data (without the pair's excluded attributes)
    plus fresh metadata, or a tombstone."""
    incoming = change.incoming
    stamp: WireItem = {
        meta.version: {"N": str(incoming.version)},
        meta.origin: {"S": incoming.origin},
        meta.rep_version: {"N": str(incoming.version)},
    }
    if incoming.ts is None:
        stamp[meta.seq] = {"S": incoming.seq}
    else:  # a Kinesis source (DESIGN §4c): ordered by ts and eventID, no sequence number
        stamp[meta.ts] = {"N": str(incoming.ts)}
        stamp[meta.event] = {"S": incoming.event_id}
    if change.kv is not None:
        stamp[meta.kv] = to_wire(change.kv)
    if change.item is None:
        return {
            **change.keys,
            **stamp,
            meta.deleted: {"BOOL": True},
            meta.expires: {"N": str(expires_at)},
        }
    user_data = {
        k: v for k, v in selection.strip(change.item).items() if not k.startswith(meta.prefix)
    }
    # The key always travels: an excluded key attribute (refused at start-up in container
    # mode; Lambda mode does not describe the table) must not make every write invalid.
    return {**user_data, **change.keys, **stamp}


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
        client: DynamoDB,
        table: str,
        *,
        region: str,
        meta: Meta,
        mode: Mode,
        tombstone_ttl_seconds: int,
        on_version_regression: Callable[[Change], None] | None = None,
        selection: Selection = EVERYTHING,
        on_conflict: Callable[[Loss, Change], Awaitable[None]] | None = None,
        source_items: SourceItems | None = None,
    ) -> None:
        """``on_conflict`` hears of each write the rule discards (active-active, DESIGN
        §4b); it must not raise for a failure to record it. ``source_items`` (a Kinesis
        pair's) settles rule K's ties."""
        self._client = client
        self.table = table
        self.region = region
        self._meta = meta
        self._mode = mode
        self._ttl = tombstone_ttl_seconds
        self._on_regression = on_version_regression
        self._selection = selection
        self._on_conflict = on_conflict
        self._source_items = source_items

    async def put(self, change: Change, *, now: float) -> Outcome:
        """Apply ``change``; ConditionalCheckFailed becomes SUPERSEDED or DUPLICATE, or
        (rule K's tie) the source's state is read and written instead.

        Raises an ``AwsError`` (with ``retryable`` and ``record_fault``) for anything else;
        a ``RequestError`` is logged with the request's shape first: it is a bug in replicator.
        """
        # Active-active: the item a write replaces tells whether it discarded one (§4b),
        # at no extra read; one-way asks nothing more.
        feed = self._on_conflict is not None and change.kv is not None
        applied, old = await self._put(change, now=now, feed=feed)
        if applied:
            if feed:
                await self._judge(change, old, applied=True)
            return Outcome.APPLIED
        stored = stored_from_item(old, self._meta)
        verdict = judge(stored, change.incoming, here=self.region, mode=self._mode)
        if verdict is TIE:
            return await self._settle_tie(change, old, now=now)
        if self._on_regression and is_version_regression(
            stored, change.incoming, here=self.region, mode=self._mode
        ):
            self._on_regression(change)
        if feed:
            await self._judge(change, old, applied=False)
        return Outcome.DUPLICATE if verdict is Outcome.DUPLICATE else Outcome.SUPERSEDED

    async def _settle_tie(self, change: Change, old: WireItem | None, *, now: float) -> Outcome:
        if self._source_items is None:
            raise ConfigError(
                f"a Kinesis change of {self.table} tied and this writer cannot read its source"
            )
        source = await self._source_items.read(change.keys)
        # The source's state as the pair replicates it: one its filter no longer
        # matches is a delete there.
        settled = self._selection.filtered(resolved(change, source, old, meta=self._meta))
        applied, _ = await self._put(settled, now=now, feed=False, tie=True)
        return Outcome.APPLIED if applied else Outcome.SUPERSEDED

    async def _put(
        self, change: Change, *, now: float, feed: bool, tie: bool = False
    ) -> tuple[bool, WireItem | None]:
        """One conditional PutItem: whether it applied, and the item it replaced or that
        refused it (ALL_OLD). ``tie``: the source's state written over a tie."""
        condition = build_condition(
            change.incoming, meta=self._meta, here=self.region, mode=self._mode, resolved=tie
        )
        item = target_item(
            change, meta=self._meta, expires_at=int(now) + self._ttl, selection=self._selection
        )
        request = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": condition.expression,
            "ExpressionAttributeNames": condition.names,
            "ExpressionAttributeValues": condition.values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if feed:
            request["ReturnValues"] = "ALL_OLD"
        try:
            answer = await self._client.put_item(**request)
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
            refused_by: WireItem | None = exc.response.get("Item")
            return False, refused_by
        except Exception as exc:
            raise classify(exc) from exc
        replaced: WireItem | None = answer.get("Attributes")
        return True, replaced

    async def _judge(self, change: Change, old: WireItem | None, *, applied: bool) -> None:
        loss = lost_write(change, old, here=self.region, applied=applied, meta=self._meta)
        if loss is not None and self._on_conflict is not None:
            await self._on_conflict(loss, change)


# DESIGN §4 rule 7, exactly: still that zombie. A looser condition (any tombstone at
# this version) turned a legitimate tombstone into a live item in the protocol model.
HEAL_CONDITION = "#v = :v AND attribute_exists(#rd) AND #rv <> #v"


class LocalWriter:
    """This region's own table in active-active mode (DESIGN §4 rules 6 and 7).

    A local delete's tombstone goes through the conflict rule like any write. A zombie
    (an application's update that landed on a tombstone) is healed: its tombstone
    attributes are removed, so readers here see the write and TTL does not expire it.
    """

    def __init__(self, tombstones: ConditionalWriter, client: DynamoDB, *, meta: Meta) -> None:
        self._tombstones = tombstones
        self._client = client
        self._meta = meta

    async def put(self, change: Change, *, now: float) -> Outcome:
        if not change.heals_zombie:
            return await self._tombstones.put(change, now=now)
        meta = self._meta
        try:
            await self._client.update_item(
                TableName=self._tombstones.table,
                Key=change.keys,
                UpdateExpression="REMOVE #rd, #re",
                ConditionExpression=HEAL_CONDITION,
                ExpressionAttributeNames={
                    "#v": meta.version,
                    "#rv": meta.rep_version,
                    "#rd": meta.deleted,
                    "#re": meta.expires,
                },
                ExpressionAttributeValues={":v": {"N": str(change.incoming.version)}},
            )
        except ClientError as exc:
            if not is_conditional_check_failed(exc):
                raise classify(exc) from exc
            # Changed again since (a newer write, or healed already): nothing to heal.
            return Outcome.SUPERSEDED
        except Exception as exc:
            raise classify(exc) from exc
        return Outcome.APPLIED


def regression_reporter(
    metrics: Metrics, source_table: str, target: TargetRef
) -> Callable[[Change], None]:
    """Counts and logs an active-active re-create that lost to its own origin's tombstone."""

    def report(change: Change) -> None:
        metrics.version_regression(source_table, target)
        key = ", ".join(f"{name}={value}" for name, _, value in change.key)
        log.error(
            "version regression on %s key %s: re-created at version %s below its tombstone in "
            "%s; in active-active mode a key's version must never go back (continue from the "
            "tombstone's version)",
            source_table,
            key,
            change.incoming.version,
            target,
        )

    return report
