"""How a configuration mistake is told: one line naming the field, what is wrong and the fix.

``config`` raises its own checks as ``problem(what, fix)``; pydantic's errors are put
into the same words by ``explain``. Values are shown without secrets: fields whose
name suggests one are never echoed, and credentials in URLs are masked.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

SECRET = re.compile(r"secret|passw|token|credential|private|api_?key|access_?key", re.I)
_USERINFO = re.compile(r"//[^/@]*@")
EXAMPLE = "see examples/replicator.yaml"
# Marks a tagged union's tag in an error's location (a filter node's kind): not a field,
# so ``path`` leaves it out.
TAG = "~"

Loc = tuple[int | str, ...]
Problem = tuple[Loc, str, str]  # (field path, what is wrong, how to fix)


def problem(what: str, fix: str) -> PydanticCustomError:
    # The text travels in ctx, not in the template, so braces in a value are never placeholders.
    return PydanticCustomError("config", "{what}", {"what": what, "fix": fix})


def quote(value: str) -> str:
    shown = _USERINFO.sub("//***@", value)  # an endpoint URL may carry credentials
    return repr(shown if len(shown) <= 60 else shown[:57] + "...")


def show(value: object, loc: Loc = ()) -> str:
    if any(isinstance(part, str) and SECRET.search(part) for part in loc):
        return "the value"
    if isinstance(value, str):
        return quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return str(value).lower()  # YAML spells booleans true and false
    return "a list" if isinstance(value, list) else "a mapping"


_MISSING_EXAMPLES = {
    "source_region": "source_region: us-east-1",
    "pairs": "pairs: [{source_table: orders, targets: [{region: eu-west-1, table: orders}]}]",
    "source_table": "source_table: orders",
    "targets": "targets: [{region: eu-west-1, table: orders}]",
    "region": "region: eu-west-1",
    "table": "table: orders",
}
_MAPPING = ("is not a mapping", "use key: value lines indented under it")
_TYPE_HINTS = {
    "int": ("is not a whole number", "use a whole number, e.g. 32"),
    "float": ("is not a number", "use a number, e.g. 100"),
    "bool": ("is not true or false", "use true or false"),
    "string": ("is not text", "use text; quote it if YAML reads it as a number or boolean"),
    "list": ("is not a list", "use a YAML list, one '- ' entry per line"),
    "dict": _MAPPING,
    "model": _MAPPING,
}
_BOUNDS = (("gt", "above"), ("ge", "of at least"), ("lt", "below"), ("le", "of at most"))


def path(loc: Loc) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]" and not part.startswith(TAG):  # a bad dict key: named by its message
            path += f".{part}" if path else part
    return path or "(top level)"


def explain(error: ErrorDetails, allowed_keys: Callable[[str], list[str]]) -> tuple[str, str]:
    loc: Loc = tuple(error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    shown = show(error.get("input"), loc)
    if kind == "config":
        return str(ctx["what"]), str(ctx["fix"])
    if kind == "missing":
        example = _MISSING_EXAMPLES.get(str(loc[-1]) if loc else "")
        return "missing", f"add it, e.g. {example}" if example else "add it"
    if kind == "extra_forbidden":
        parent = next((part for part in reversed(loc[:-1]) if isinstance(part, str)), "")
        allowed = allowed_keys(parent)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        what = f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
        return what, f"remove it (allowed: {', '.join(allowed)})"
    if kind == "too_short":
        return "empty", "add at least one entry"
    if kind == "finite_number":  # .inf or .nan in YAML
        return f"{shown} is not a finite number", "use a plain number, e.g. 100"
    if bounds := [f"{word} {ctx[key]:g}" for key, word in _BOUNDS if key in ctx]:
        return f"{shown} is out of range", f"use a value {bounds[0]}"
    if kind in ("enum", "literal_error"):
        return f"{shown} is not a known value", f"use one of {ctx.get('expected')}"
    if hint := _TYPE_HINTS.get(kind.split("_")[0]):
        # A key with nothing after it reads as null in YAML: it is empty, not of a wrong type.
        return "empty" if error.get("input") is None else f"{shown} {hint[0]}", hint[1]
    return error["msg"], f"fix the value ({EXAMPLE})"


def error_lines(
    source: str, exc: ValidationError, allowed_keys: Callable[[str], list[str]]
) -> list[str]:
    """One line per problem; ``allowed_keys(parent)``: the keys a mapping may hold."""
    problems: list[Problem] = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        if error["type"] == "config_rules":
            problems += [(loc + rel, what, fix) for rel, what, fix in error["ctx"]["problems"]]
        else:
            problems.append((loc, *explain(error, allowed_keys)))
    return [f"{source}: {path(loc)}: {what} — {fix}" for loc, what, fix in problems]
