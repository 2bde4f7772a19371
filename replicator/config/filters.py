"""A pair's item filter: a small declarative tree in YAML, and the one function that reads it.

    filter:
      all:
        - {attribute: region, equals: eu}
        - {attribute: tier, in: [gold, silver]}
        - any:
            - {attribute: amount, ge: 100}
            - not: {attribute: archived, exists: true}

A test names one ``attribute`` and exactly one of ``equals``, ``in``, ``exists``,
``begins_with``, ``lt``, ``le``, ``gt``, ``ge``; ``all``, ``any`` and ``not`` combine
tests. ``matches`` evaluates the tree on an image in wire form (``{"a": {"S": "x"}}``);
the pipeline, the Lambda handler, backfill and verify all call it, so "what a target
holds" has one meaning. A test on an attribute the item lacks (or holds with another
type) is false, as DynamoDB's own condition expressions read it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
    model_validator,
)

from replicator.config.messages import TAG, problem, show
from replicator.models import WireItem

__all__ = ["AllOf", "AnyOf", "AttributeTest", "Filter", "Not", "matches"]


def _scalar(value: object) -> bool | str | Decimal:
    if isinstance(value, bool | str):
        return value
    return _number(value)


def _number(value: object) -> Decimal:
    # Decimal, as DynamoDB numbers are: a float would round a large id.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    raise problem(f"{show(value)} is not a number", "use a number, e.g. 100")


T = TypeVar("T")


def _non_empty(values: tuple[T, ...]) -> tuple[T, ...]:
    # Not min_length: pydantic then also calls a tuple with one bad entry "too short".
    if not values:
        raise problem("empty", "add at least one entry")
    return values


NonEmpty = Annotated[tuple[T, ...], AfterValidator(_non_empty)]
Scalar = Annotated[bool | str | Decimal, BeforeValidator(_scalar)]
Number = Annotated[Decimal, BeforeValidator(_number)]
_TESTS = ("equals", "in", "exists", "begins_with", "lt", "le", "gt", "ge")
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_by_name=True)


class AttributeTest(BaseModel):
    """One attribute checked one way."""

    model_config = _FROZEN

    attribute: Annotated[str, Field(min_length=1)]
    equals: Scalar | None = None
    in_: NonEmpty[Scalar] | None = Field(default=None, alias="in")
    exists: StrictBool | None = None
    begins_with: StrictStr | None = None
    lt: Number | None = None
    le: Number | None = None
    gt: Number | None = None
    ge: Number | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        given = [name for name in _TESTS if getattr(self, _field(name)) is not None]
        if len(given) != 1:
            what = "no test" if not given else f"{len(given)} tests ({', '.join(given)})"
            fix = f"give exactly one of {', '.join(_TESTS)}; combine tests with all: or any:"
            raise problem(f"{what} on attribute {self.attribute!r}", fix)
        return self


class AllOf(BaseModel):
    model_config = _FROZEN
    all_: NonEmpty[Filter] = Field(alias="all")


class AnyOf(BaseModel):
    model_config = _FROZEN
    any_: NonEmpty[Filter] = Field(alias="any")


class Not(BaseModel):
    model_config = _FROZEN
    not_: Filter = Field(alias="not")


def _kind(value: Any) -> str:
    # The key present says which node it is, so an error names that node's fields only.
    if isinstance(value, dict):
        return TAG + next((key for key in ("all", "any", "not") if key in value), "test")
    combinators: dict[type[BaseModel], str] = {AllOf: "all", AnyOf: "any", Not: "not"}
    return TAG + combinators.get(type(value), "test")


Filter = Annotated[
    Annotated[AttributeTest, Tag(TAG + "test")]
    | Annotated[AllOf, Tag(TAG + "all")]
    | Annotated[AnyOf, Tag(TAG + "any")]
    | Annotated[Not, Tag(TAG + "not")],
    Discriminator(_kind),
]
for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


def _field(test: str) -> str:
    return "in_" if test == "in" else test


def matches(node: Filter, image: WireItem) -> bool:
    """Whether ``image`` (wire form) passes the filter ``node``."""
    if isinstance(node, AllOf):
        return all(matches(each, image) for each in node.all_)
    if isinstance(node, AnyOf):
        return any(matches(each, image) for each in node.any_)
    if isinstance(node, Not):
        return not matches(node.not_, image)
    attribute = image.get(node.attribute)
    if node.exists is not None:
        return (attribute is not None) == node.exists
    if attribute is None:
        return False
    if node.equals is not None:
        return _equals(attribute, node.equals)
    if node.in_ is not None:
        return any(_equals(attribute, each) for each in node.in_)
    if node.begins_with is not None:
        text = attribute.get("S")
        return isinstance(text, str) and text.startswith(node.begins_with)
    return _compares(attribute, node)


def _equals(attribute: dict[str, Any], value: bool | str | Decimal) -> bool:
    if isinstance(value, bool):
        return attribute.get("BOOL") is value
    if isinstance(value, str):
        return attribute.get("S") == value
    number = _number_of(attribute)
    return number is not None and number == value


def _compares(attribute: dict[str, Any], node: AttributeTest) -> bool:
    number = _number_of(attribute)
    if number is None:
        return False
    if node.lt is not None:
        return number < node.lt
    if node.le is not None:
        return number <= node.le
    if node.gt is not None:
        return number > node.gt
    return node.ge is not None and number >= node.ge


def _number_of(attribute: dict[str, Any]) -> Decimal | None:
    text = attribute.get("N")
    return Decimal(text) if isinstance(text, str) else None
