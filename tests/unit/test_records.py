"""Which records are replicated (DESIGN §4): filter first, then coalesce."""

from __future__ import annotations

from decimal import Decimal

import pytest

from replicator.apply.writer import target_item
from replicator.errors import RecordError
from replicator.models import Change, Meta
from replicator.stream.records import (
    ECHO,
    LOCAL_TOMBSTONE,
    REMOVE_OF_NOTHING,
    TOMBSTONE_EXPIRY,
    coalesce,
    to_change,
)
from tests.records import image, record

HERE, OTHER = "us-east-1", "eu-west-1"
META = Meta(version="version")
pytestmark = pytest.mark.timeout(10)


def change(rec: dict[str, object]) -> Change:
    result = to_change(rec, here=HERE, meta=META)
    assert isinstance(result, Change)
    return result


def test_a_write_the_replicator_made_is_an_echo_and_is_not_sent_back() -> None:
    replicated = image("a", 3, origin=OTHER)
    assert to_change(record("INSERT", 1, new=replicated), here=HERE, meta=META) == ECHO


def test_an_application_update_to_a_replicated_item_is_replicated() -> None:
    old = image("a", 3, origin=OTHER)
    updated = image("a", 4, origin=OTHER, rep_version=3, note="edited here")
    result = change(record("MODIFY", 2, new=updated, old=old))
    assert result.incoming.origin == HERE
    assert result.incoming.version == Decimal(4)
    assert not result.incoming.tombstone


def test_a_plain_local_write_is_replicated_with_this_region_as_origin() -> None:
    result = change(record("INSERT", 5, new=image("a", 1)))
    assert (result.incoming.origin, result.incoming.seq) == (HERE, "5".zfill(40))
    assert result.incoming.recreate  # no OldImage: a (re-)create


def test_remove_becomes_a_tombstone_of_the_old_version() -> None:
    result = change(record("REMOVE", 9, old=image("a", 7)))
    assert result.item is None
    assert (result.incoming.version, result.incoming.tombstone) == (Decimal(7), True)
    assert result.incoming.origin == HERE


def test_ttl_expiry_of_a_live_item_replicates_as_a_delete() -> None:
    result = change(record("REMOVE", 9, old=image("a", 7), service=True))
    assert result.incoming.tombstone


def test_ttl_expiry_of_a_tombstone_is_not_replicated() -> None:
    expired = record("REMOVE", 9, old=image("a", 7, origin=OTHER, tombstone=True), service=True)
    assert to_change(expired, here=HERE, meta=META) == TOMBSTONE_EXPIRY


def test_remove_of_nothing_is_skipped() -> None:
    rec = record("REMOVE", 9, old=image("a", 7))
    del rec["dynamodb"]["OldImage"]
    assert to_change(rec, here=HERE, meta=META) == REMOVE_OF_NOTHING


def test_this_regions_own_local_tombstone_is_not_sent() -> None:
    local = image("a", 7, origin=HERE, tombstone=True)
    assert to_change(record("MODIFY", 9, new=local), here=HERE, meta=META) == LOCAL_TOMBSTONE


def test_write_over_a_tombstone_is_a_recreate() -> None:
    old = image("a", 5, origin=OTHER, tombstone=True)
    assert change(record("MODIFY", 9, new=image("a", 1), old=old)).incoming.recreate


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (record("INSERT", 1, new=image("a", None)), "no numeric version"),
        (record("REMOVE", 1, old=image("a", None)), "no numeric version"),
        (record("INSERT", 1, new={"pk": {"S": "a"}, "version": {"S": "3"}}), "no numeric version"),
        ({"eventName": "INSERT"}, "no dynamodb.Keys"),
        ({**record("INSERT", 1, new=image("a", 1)), "eventName": "UPSERT"}, "unknown eventName"),
    ],
)
def test_records_that_cannot_be_applied_are_errors_for_the_dlq(
    rec: dict[str, object], reason: str
) -> None:
    with pytest.raises(RecordError, match=reason):
        to_change(rec, here=HERE, meta=META)


def test_a_record_without_new_image_names_the_stream_view_type_fix() -> None:
    rec = record("INSERT", 1, new=image("a", 1))
    del rec["dynamodb"]["NewImage"]
    with pytest.raises(RecordError, match="NEW_AND_OLD_IMAGES"):
        to_change(rec, here=HERE, meta=META)


def test_a_run_of_writes_coalesces_to_its_last_write_per_key() -> None:
    changes = [
        change(record("MODIFY", 1, new=image("a", 2), old=image("a", 1))),
        change(record("MODIFY", 2, new=image("b", 5), old=image("b", 4))),
        change(record("MODIFY", 3, new=image("a", 3), old=image("a", 2))),
    ]
    per_key = coalesce(changes)
    assert [[c.sequence_number for c in run] for run in per_key.values()] == [["3"], ["2"]]


def test_coalescing_never_crosses_a_remove() -> None:
    changes = [
        change(record("MODIFY", 1, new=image("a", 2), old=image("a", 1))),
        change(record("MODIFY", 2, new=image("a", 3), old=image("a", 2))),
        change(record("REMOVE", 3, old=image("a", 3))),
        change(record("INSERT", 4, new=image("a", 1))),
        change(record("MODIFY", 5, new=image("a", 2), old=image("a", 1))),
    ]
    (run,) = coalesce(changes).values()
    assert [c.sequence_number for c in run] == ["2", "3", "5"]
    assert run[2].incoming.recreate  # its run held the re-create of seq 4
    assert not run[0].incoming.recreate


# DESIGN §4 rule 7: an application's UpdateItem (condition version = 1, SET version = 2)
# that landed on a replicated tombstone v1 keeps _rep_deleted: a "zombie".
def zombie_image(**data: str) -> dict[str, dict[str, object]]:
    item = image("a", 2, origin=OTHER, rep_version=1, tombstone=True, **data)
    item["_rep_expires"] = {"N": "1700604800"}
    return item


def test_a_zombie_is_a_live_write_of_this_region_without_its_tombstone_attributes() -> None:
    tomb = image("a", 1, origin=OTHER, tombstone=True)
    result = change(record("MODIFY", 4, new=zombie_image(amount="7"), old=tomb))
    assert (result.incoming.version, result.incoming.tombstone) == (Decimal(2), False)
    assert result.incoming.origin == HERE
    assert result.heals_zombie
    sent = target_item(result, meta=META, expires_at=0)
    assert "_rep_deleted" not in sent and "_rep_expires" not in sent
    assert sent["amount"] == {"S": "7"}


def test_the_remove_of_a_zombie_is_an_application_delete_replicated_as_a_tombstone() -> None:
    result = change(record("REMOVE", 5, old=zombie_image()))
    assert (result.incoming.version, result.incoming.tombstone) == (Decimal(2), True)
    assert result.incoming.origin == HERE


def test_a_write_over_a_zombie_is_not_a_re_create_and_heals_nothing_when_it_is_whole() -> None:
    result = change(record("MODIFY", 6, new=image("a", 3), old=zombie_image()))
    assert not result.incoming.recreate
    assert not result.heals_zombie


def test_a_tombstone_still_at_its_version_is_skipped_as_before() -> None:
    tomb = image("a", 1, origin=HERE, tombstone=True)
    assert to_change(record("MODIFY", 7, new=tomb), here=HERE, meta=META) == LOCAL_TOMBSTONE
    expired = record("REMOVE", 8, old=tomb, service=True)
    assert to_change(expired, here=HERE, meta=META) == TOMBSTONE_EXPIRY
