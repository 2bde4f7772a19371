"""Rules across fields of ``replicator.yaml``: each broken one is a (location, what, fix) line.

They run once every field is valid (``Config``'s validator), and all are reported together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replicator.config.messages import Loc, Problem, path, quote
from replicator.models import Mode

if TYPE_CHECKING:
    from replicator.config.schema import Config, Pair


def rule_problems(config: Config) -> list[Problem]:
    found: list[Problem] = []
    sources: dict[str, int] = {}
    targets: dict[tuple[str, str], Loc] = {}
    for i, pair in enumerate(config.pairs):
        if pair.version_attribute.startswith(prefix := config.metadata_prefix):
            what = f"{quote(pair.version_attribute)} starts with the metadata prefix {prefix!r}"
            fix = "rename the version attribute or change metadata_prefix"
            found.append((("pairs", i, "version_attribute"), what, fix))
        found += _selection_problems(config, pair, i)
        found += _kinesis_problems(config, pair, i)
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


def _kinesis_problems(config: Config, pair: Pair, i: int) -> list[Problem]:
    if pair.kinesis_stream is None:
        return []
    found: list[Problem] = []
    at: Loc = ("pairs", i, "kinesis_stream")
    if pair.kinesis_stream.startswith("arn:"):
        region = pair.kinesis_stream.split(":")[3]
        if region != config.source_region:
            # A table streams only to a Kinesis stream of its own region.
            what = f"the stream is in {region}, not in the source region {config.source_region}"
            found.append((at, what, "name the stream the source table streams its changes to"))
    if config.mode is Mode.ACTIVE_ACTIVE and "conflicts_table" in config.model_fields_set:
        what = (
            "active-active with a Kinesis source records no conflicts (the conflict feed is "
            "not built for Kinesis sources), so conflicts_table would stay empty"
        )
        fix = "remove conflicts_table, or read this pair from its DynamoDB stream"
        found.append((at, what, fix))
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
