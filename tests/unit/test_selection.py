"""What is replicated: the item filter, excluded attributes and the TTL-delete policy, as
pure functions (README "What is replicated").

The contract is "each target holds filter(source) without the excluded attributes":
checked over random one-way histories (writes moving items in and out of the filter,
deletes, re-creates with the version reset, redelivered batches) replayed through the
production decode, coalescing, conflict rule and target item.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from replicator.apply.rule import decide, visible
from replicator.apply.selection import Selection
from replicator.apply.writer import target_item
from replicator.config.filters import Filter, matches
from replicator.models import Change, ItemKey, Meta, Mode, Outcome, WireItem, stored_from_item
from replicator.pipeline.batches import decode
from replicator.stream.records import TTL_DELETE, coalesce
from tests.records import image, record

HERE, THERE = "us-east-1", "eu-west-1"
META = Meta(version="version")
NAMES = ("a", "b", "c")
pytestmark = pytest.mark.timeout(60)

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize
FILTER = TypeAdapter(Filter)

scalars = st.one_of(
    st.booleans(),
    st.sampled_from(["eu", "us", "eu-west", "gold", ""]),
    st.integers(-3, 3),
    st.sampled_from([0.5, 2.5]),
)
tests_ = st.one_of(
    st.builds(lambda a, v: {"attribute": a, "equals": v}, st.sampled_from(NAMES), scalars),
    st.builds(
        lambda a, vs: {"attribute": a, "in": vs},
        st.sampled_from(NAMES),
        st.lists(scalars, min_size=1, max_size=3),
    ),
    st.builds(lambda a, e: {"attribute": a, "exists": e}, st.sampled_from(NAMES), st.booleans()),
    st.builds(
        lambda a, p: {"attribute": a, "begins_with": p},
        st.sampled_from(NAMES),
        st.sampled_from(["eu", "e", "us-", ""]),
    ),
    st.builds(
        lambda a, op, n: {"attribute": a, op: n},
        st.sampled_from(NAMES),
        st.sampled_from(["lt", "le", "gt", "ge"]),
        st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -1.5])),
    ),
)
filters = st.recursive(
    tests_,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
values = st.one_of(
    st.booleans(),
    st.sampled_from(["eu", "us", "eu-west", "gold", "", "e"]),
    st.integers(-3, 3).map(Decimal),
    st.sampled_from([Decimal("0.5"), Decimal("2.50"), Decimal("-1.5")]),
)
attributes = st.dictionaries(st.sampled_from(NAMES), values, max_size=3)


def oracle(node: dict[str, Any], item: dict[str, Any]) -> bool:
    """The filter's meaning on Python values, written apart from ``matches``."""
    if "all" in node:
        return all(oracle(each, item) for each in node["all"])
    if "any" in node:
        return any(oracle(each, item) for each in node["any"])
    if "not" in node:
        return not oracle(node["not"], item)
    present, value = node["attribute"] in item, item.get(node["attribute"])
    if "exists" in node:
        return present is node["exists"]
    if not present:
        return False
    if "equals" in node or "in" in node:
        wanted = node["in"] if "in" in node else [node["equals"]]
        return any(same(value, w) for w in wanted)
    if "begins_with" in node:
        return isinstance(value, str) and value.startswith(node["begins_with"])
    if not isinstance(value, Decimal) or isinstance(value, bool):
        return False
    op = next(k for k in ("lt", "le", "gt", "ge") if k in node)
    bound = Decimal(str(node[op]))
    results = {"lt": value < bound, "le": value <= bound, "gt": value > bound}
    return results.get(op, value >= bound)


def same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    if isinstance(wanted, str) or isinstance(value, str):
        return value == wanted
    return value == Decimal(str(wanted))


def wire(values: dict[str, Any]) -> WireItem:
    return {name: _serialize(value) for name, value in values.items()}


@settings(max_examples=400, deadline=None)
@given(filters, attributes)
def test_the_filter_means_what_its_yaml_says_on_the_wire_image(
    node: dict[str, Any], item: dict[str, Any]
) -> None:
    assert matches(FILTER.validate_python(node), wire(item)) == oracle(node, item)


@settings(max_examples=200, deadline=None)
@given(filters, attributes)
def test_not_all_is_any_not(node: dict[str, Any], item: dict[str, Any]) -> None:
    image_ = wire(item)
    negated = FILTER.validate_python({"not": {"all": [node, {"attribute": "a", "exists": True}]}})
    de_morgan = FILTER.validate_python(
        {"any": [{"not": node}, {"not": {"attribute": "a", "exists": True}}]}
    )
    assert matches(negated, image_) == matches(de_morgan, image_)


@settings(max_examples=200, deadline=None)
@given(attributes, st.sets(st.sampled_from(NAMES)))
def test_an_excluded_attribute_is_never_written_and_everything_else_is(
    item: dict[str, Any], excluded: set[str]
) -> None:
    selection = Selection(exclude=frozenset(excluded))
    new = {**image("k", 2), **wire(item)}
    changes, _ = decode(
        [record("INSERT", 1, new=new)], here=HERE, meta=META, table="t", skipped=print
    )
    written = target_item(changes[0], meta=META, expires_at=0, selection=selection)
    assert not excluded & written.keys()
    assert visible(written, META) == visible(
        {k: v for k, v in new.items() if k not in excluded}, META
    )


def ttl_remove(seq: int, *, by_ttl: bool) -> dict[str, Any]:
    return record("REMOVE", seq, old=image("k", 3), service=by_ttl)


@pytest.mark.parametrize("by_ttl", [True, False])
def test_skip_leaves_out_only_the_removes_ttl_made(by_ttl: bool) -> None:
    skipped: list[str] = []
    skip = Selection(skip_ttl_deletes=True, ttl_attribute="expires")
    changes, _ = decode(
        [ttl_remove(1, by_ttl=by_ttl)],
        here=HERE,
        meta=META,
        table="t",
        skipped=skipped.append,
        selection=skip,
    )
    assert (skipped, len(changes)) == (([TTL_DELETE.reason], 0) if by_ttl else ([], 1))
    # The default (as Global Tables) replicates the expiry as a delete.
    replicated, _ = decode(
        [ttl_remove(1, by_ttl=by_ttl)], here=HERE, meta=META, table="t", skipped=print
    )
    assert replicated[0].incoming.tombstone


def test_a_lambda_events_spelling_of_the_ttl_identity_is_recognised() -> None:
    event_record = ttl_remove(1, by_ttl=False)
    event_record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert Selection(skip_ttl_deletes=True).select(decode_one(event_record)) == TTL_DELETE


def decode_one(rec: dict[str, Any]) -> Change:
    changes, _ = decode([rec], here=HERE, meta=META, table="t", skipped=print)
    return changes[0]


def test_verify_counts_an_expired_item_as_absent_only_when_ttl_deletes_are_skipped() -> None:
    item = {**image("k", 1), "expires": {"N": "100"}}
    skip = Selection(skip_ttl_deletes=True, ttl_attribute="expires")
    assert skip.replica_of(item, now=101) is None and skip.as_seen(item, now=101) is None
    assert skip.as_seen(item, now=99) == item
    assert Selection(ttl_attribute="expires").as_seen(item, now=101) == item


# --- the contract over histories -------------------------------------------------------

# One step of the application on one key: write attributes (a new version, or version 1
# after a delete: the re-create reset), or delete.
steps = st.lists(
    st.tuples(st.sampled_from(["k1", "k2"]), st.one_of(st.none(), attributes)),
    min_size=1,
    max_size=25,
)


def history(ops: list[tuple[str, dict[str, Any] | None]]) -> list[tuple[dict[str, Any], dict]]:
    """Stream records of the ops, each with a snapshot of the source after it."""
    source: dict[str, WireItem] = {}
    versions: dict[str, int] = {}
    out = []
    for seq, (key, attrs) in enumerate(ops, start=1):
        old = source.get(key)
        if attrs is None:
            if old is None:
                continue
            rec = record("REMOVE", seq, old=old)
            del source[key]
        else:
            versions[key] = versions.get(key, 0) + 1 if old is not None else 1
            new = {**image(key, versions[key]), **wire(attrs)}
            rec = record("MODIFY" if old else "INSERT", seq, new=new, old=old)
            source[key] = new
        out.append((rec, dict(source)))
    return out


def apply(
    table: dict[ItemKey, WireItem], batch: list[dict[str, Any]], selection: Selection
) -> None:
    changes, dead = decode(
        batch, here=HERE, meta=META, table="t", skipped=lambda _: None, selection=selection
    )
    assert not dead
    for key, run in coalesce(changes).items():
        for change in run:
            stored = stored_from_item(table.get(key), META)
            if decide(stored, change.incoming, here=THERE, mode=Mode.ONE_WAY) is Outcome.APPLIED:
                table[key] = target_item(change, meta=META, expires_at=0, selection=selection)


@settings(max_examples=300, deadline=None)
@given(
    steps,
    filters,
    st.sets(st.sampled_from(NAMES), max_size=1),
    st.lists(st.integers(1, 4), min_size=1, max_size=10),
    st.lists(st.booleans(), min_size=1, max_size=10),
)
def test_after_every_drain_each_target_holds_filter_of_source(
    ops: list[tuple[str, dict[str, Any] | None]],
    node: dict[str, Any],
    excluded: set[str],
    sizes: list[int],
    redeliver: list[bool],
) -> None:
    selection = Selection(exclude=frozenset(excluded), filter=FILTER.validate_python(node))
    records = history(ops)
    target: dict[ItemKey, WireItem] = {}
    position, turn = 0, 0
    while position < len(records):
        size = sizes[turn % len(sizes)]
        batch = [rec for rec, _ in records[position : position + size]]
        apply(target, batch, selection)
        if redeliver[turn % len(redeliver)]:
            apply(target, batch, selection)  # at-least-once: the batch comes again
        position, turn = position + len(batch), turn + 1
        source = records[position - 1][1]
        for key in ("k1", "k2"):
            expected = selection.replica_of(source.get(key), now=0)
            held = target.get((("pk", "S", key),))
            assert visible(held, META) == visible(expected, META), (key, node)
            assert held is None or not excluded & held.keys()


def test_the_key_is_written_even_where_a_key_attribute_is_excluded() -> None:
    # Container mode refuses it at start-up; Lambda mode does not describe the table, and
    # a key-less PutItem would refuse every record.
    change = decode_one(record("INSERT", 1, new={**image("k", 1), "ssn": {"S": "x"}}))
    written = target_item(
        change, meta=META, expires_at=0, selection=Selection(exclude=frozenset({"pk", "ssn"}))
    )
    assert written["pk"] == {"S": "k"} and "ssn" not in written
