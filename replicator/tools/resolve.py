"""``replicator conflicts resolve ID --keep winner|loser`` (DESIGN §4b).

``winner`` accepts what last-writer-wins kept and closes the entry. ``loser`` writes the
lost write back as a new application write in the loser's region: its attributes at
the current version + 1, conditional on that version, so the write is ordered after
everything the item saw and replicates like any other (a lost delete is deleted again,
conditional on the current version). Then it closes the entry. Closing marks the entry
``resolved`` (which side, when), conditional on its being open: two operators resolving
the same entry cannot both act.
"""

from __future__ import annotations

import time
from typing import Literal

from botocore.exceptions import ClientError

from replicator.aws.classify import is_conditional_check_failed
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError, ReplicatorError
from replicator.models import WireItem, number
from replicator.service.wiring import meta_for
from replicator.tools.conflicts import Entry, find

Keep = Literal["winner", "loser"]


async def resolve(config: Config, entry_id: str, *, keep: Keep) -> Entry:
    """Settle the entry ``entry_id``; returns it as it was found."""
    entry = await find(config, entry_id)
    if entry.resolved:
        raise ReplicatorError(f"conflict {entry_id} was resolved already (kept {entry.resolved})")
    retry = RetryPolicy()
    clients = Clients(config.endpoints)
    try:
        if keep == "loser":
            region = entry.loser.origin
            client = await clients.json("dynamodb", region)
            await _write_back(config, entry, client, table_in(config, entry, region), retry)
        feed = await clients.json("dynamodb", entry.feed_region)
        await _close(config, entry, feed, keep, retry)
    finally:
        await clients.aclose()
    return entry


def table_in(config: Config, entry: Entry, region: str) -> str:
    """The name of the entry's table in ``region``, from the pair that names it."""
    for pair in config.pairs:
        names = {config.source_region: pair.source_table}
        names.update({target.region: target.table for target in pair.targets})
        if entry.table in names.values() and region in names:
            return names[region]
    raise ConfigError(
        f"no pair of this config names table {entry.table!r} in {region}: run resolve with "
        "the config of a region that replicates it"
    )


async def _write_back(
    config: Config, entry: Entry, client: DynamoDB, table: str, retry: RetryPolicy
) -> None:
    meta = meta_for(config, _pair_of(config, entry))
    version_name = meta.version
    found = await retry.call(
        "conflict resolve read",
        entry.loser.origin,
        lambda: client.get_item(TableName=table, Key=entry.key, ConsistentRead=True),
    )
    current: WireItem | None = found.get("Item")
    current_version = number((current or {}).get(version_name))
    names = {"#v": version_name}
    if current_version is None:
        condition, values = "attribute_not_exists(#v)", {}
        following = entry.loser.version + 1
    else:
        condition, values = "#v = :v", {":v": {"N": str(current_version)}}
        following = current_version + 1
    if entry.loser.tombstone:
        call, request = client.delete_item, {"TableName": table, "Key": entry.key}
    else:
        image = entry.loser.image
        if image is None:
            raise ReplicatorError(
                f"conflict {entry.id}: the lost write's image was too large to keep; "
                "restore it by hand"
            )
        item = {k: v for k, v in image.items() if not k.startswith(meta.prefix)}
        item[version_name] = {"N": str(following)}
        call, request = client.put_item, {"TableName": table, "Item": item}

    async def attempt() -> None:
        try:
            await call(
                **request,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                raise ReplicatorError(
                    f"conflict {entry.id}: the item changed while it was being restored; "
                    "nothing was written, run resolve again"
                ) from exc
            raise

    await retry.call("conflict resolve write", entry.loser.origin, attempt)


def _pair_of(config: Config, entry: Entry) -> Pair:
    for pair in config.pairs:
        if entry.table == pair.source_table or entry.table in {t.table for t in pair.targets}:
            return pair
    raise ConfigError(f"no pair of this config names table {entry.table!r}")


async def _close(
    config: Config, entry: Entry, client: DynamoDB, keep: Keep, retry: RetryPolicy
) -> None:
    async def attempt() -> None:
        try:
            await client.update_item(
                TableName=config.conflicts_table,
                Key={"pk": {"S": entry.pk}, "sk": {"S": entry.sk}},
                UpdateExpression="SET resolved = :keep, resolved_at = :at",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(resolved)",
                ExpressionAttributeValues={
                    ":keep": {"S": keep},
                    ":at": {"N": f"{time.time():.3f}"},
                },
            )
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                raise ReplicatorError(f"conflict {entry.id} was resolved meanwhile") from exc
            raise

    await retry.call("conflict resolve close", entry.feed_region, attempt)
