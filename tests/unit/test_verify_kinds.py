"""What verify calls each difference between what readers see in source and target."""

from __future__ import annotations

import pytest

from replicator.models import Meta, WireItem
from replicator.tools.verify import kind_of
from tests.records import image

META = Meta(version="version")
pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("source", "target", "kind"),
    [
        (image("a", 3, note="x"), image("a", 3, origin="us-east-1", note="x"), None),
        (None, image("a", 3, origin="us-east-1", tombstone=True), None),  # tombstone = absent
        (image("a", 3, origin="eu-west-1", tombstone=True), None, None),
        # A zombie (an update landed on a tombstone v3) is live: DESIGN §3.
        (image("a", 4, origin="eu-west-1", rep_version=3, tombstone=True), None, "missing"),
        (image("a", 3), None, "missing"),
        (None, image("a", 3), "extra"),
        (image("a", 4, note="new"), image("a", 3, note="old"), "stale"),
        (image("a", 5, origin="us-east-1", tombstone=True), image("a", 5), "resurrected"),
        (image("a", 1), image("a", 5, origin="us-east-1", tombstone=True), "version regression"),
        (image("a", 6), image("a", 5, origin="us-east-1", tombstone=True), "missing"),
    ],
)
def test_differences_are_named_by_kind(
    source: WireItem | None, target: WireItem | None, kind: str | None
) -> None:
    assert kind_of(source, target, META) == kind
