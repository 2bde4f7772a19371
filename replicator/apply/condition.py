"""The conflict rule (DESIGN §3) as one ConditionExpression for PutItem.

The expression is specialised on what is known about the incoming write
(tombstone or live, re-create or not, its origin, the target's region), so every
constant comparison is settled here and only stored attributes are left to
DynamoDB. DynamoDB rejects redundant parentheses, so expressions are built as a
small tree and parenthesised only where precedence (NOT > AND > OR) needs it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from replicator.models import Incoming, Meta, Mode

_OR, _AND, _NOT, _ATOM = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Expr:
    text: str
    precedence: int = _ATOM

    def __or__(self, other: Expr) -> Expr:
        return Expr(f"{_wrap(self, _OR)} OR {_wrap(other, _OR)}", _OR)

    def __and__(self, other: Expr) -> Expr:
        return Expr(f"{_wrap(self, _AND)} AND {_wrap(other, _AND)}", _AND)

    def __invert__(self) -> Expr:
        return Expr(f"NOT {_wrap(self, _NOT + 1)}", _NOT)


def _wrap(expr: Expr, precedence: int) -> str:
    return f"({expr.text})" if expr.precedence < precedence else expr.text


@dataclass(frozen=True, slots=True)
class Condition:
    expression: str
    names: dict[str, str]
    values: dict[str, dict[str, Any]]


# Rule K (DESIGN §4c): apply iff nothing newer is stored; after a tie read, the
# source's state is written over the tie (equal ts) too.
RULE_K = "attribute_not_exists(#rt) OR #rt < :t"
RULE_K_RESOLVED = "attribute_not_exists(#rt) OR #rt <= :t"


def build_condition(
    incoming: Incoming, *, meta: Meta, here: str, mode: Mode, resolved: bool = False
) -> Condition:
    """The condition under which a PutItem of ``incoming`` into region ``here`` applies.

    ``resolved``: a one-way Kinesis change written after a tie read (``rulek``).
    """
    if incoming.ts is not None and mode is Mode.ONE_WAY:
        return Condition(
            expression=RULE_K_RESOLVED if resolved else RULE_K,
            names={"#rt": meta.ts},
            values={":t": {"N": str(incoming.ts)}},
        )
    # A Kinesis source has no ``_rep_seq`` fence (``rule.decide``); DynamoDB refuses
    # names and values an expression does not use.
    fenced = incoming.ts is None
    expression = _expression(
        tombstone=incoming.tombstone,
        recreate=mode is Mode.ONE_WAY and incoming.recreate,
        here_before_origin=here < incoming.origin,
        here_is_origin=here == incoming.origin,
        fenced=fenced,
    )
    names = {
        "#v": meta.version,
        "#rv": meta.rep_version,
        "#ro": meta.origin,
        "#rs": meta.seq,
        "#rd": meta.deleted,
    }
    values = {
        ":v": {"N": str(incoming.version)},
        ":o": {"S": incoming.origin},
        ":s": {"S": incoming.seq},
        ":n": {"S": "N"},
        ":str": {"S": "S"},
    }
    if not fenced:
        del names["#rs"], values[":s"]
    return Condition(expression=expression, names=names, values=values)


@functools.cache
def _expression(
    *,
    tombstone: bool,
    recreate: bool,
    here_before_origin: bool,
    here_is_origin: bool,
    fenced: bool = True,
) -> str:
    # Only these five facts shape the expression: built once each (building it cost
    # ~50 µs a write), the values travel separately.
    version_missing = Expr("attribute_not_exists(#v)") | ~Expr("attribute_type(#v, :n)")
    replicated = Expr("#rv = #v") & Expr("attribute_type(#ro, :str)")
    seq_older = Expr("attribute_not_exists(#rs)") | Expr("#rs < :s")
    from_incoming_origin = replicated & Expr("#ro = :o")

    # A tombstone only while unchanged since (§3): a zombie keeps ``_rep_deleted``.
    live = Expr("attribute_not_exists(#rd)") | ~Expr("#rv = #v")

    origin_older = replicated & Expr("#ro < :o")
    if here_before_origin:
        origin_older = origin_older | ~replicated
    tail = live | origin_older if tombstone else live & origin_older
    key_greater = Expr("#v < :v") | Expr("#v = :v") & tail
    if fenced:
        key_greater = key_greater & (~from_incoming_origin | seq_older)
    condition = version_missing | key_greater

    if recreate:
        recreate_clause = from_incoming_origin & seq_older
        if here_is_origin:
            recreate_clause = recreate_clause | ~replicated
        condition = condition | recreate_clause
    return condition.text
