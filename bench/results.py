"""A benchmark figure, its goal and the verdict; the table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Op = Literal[">=", "<="]
TABLE_WIDTH = 180


@dataclass(frozen=True, slots=True)
class Goal:
    op: Op
    value: float
    unit: str

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured <= self.value

    @property
    def text(self) -> str:
        symbol = "≥" if self.op == ">=" else "≤"
        return f"{symbol} {_number(self.value)} {self.unit}".rstrip()


@dataclass(frozen=True, slots=True)
class Result:
    """One figure. Without a goal it is context for another figure (a ceiling, a side path)."""

    benchmark: str  # "1 pipeline overhead"
    figure: str  # what was measured, in words
    measured: float | None  # None: could not be measured (see ``note``)
    unit: str
    goal: Goal | None = None
    note: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    # Why no pipeline could meet the goal on this backend (measured in the same run);
    # such a goal is reported, not judged.
    unreachable: str = ""

    @property
    def passed(self) -> bool | None:
        if self.goal is None or self.unreachable:
            return None
        return self.measured is not None and self.goal.met(self.measured)

    def as_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "measured": self.measured,
            "unit": self.unit,
            "goal": None if self.goal is None else {**asdict(self.goal), "text": self.goal.text},
            "passed": self.passed,
            "unreachable": self.unreachable or None,
            "note": self.note,
            "details": dict(self.details),
        }


def _number(value: float) -> str:
    if value == int(value) and abs(value) >= 1000:
        return f"{int(value):,}".replace(",", " ")
    if abs(value) >= 100:
        return f"{value:,.0f}".replace(",", " ")
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def shown(result: Result) -> str:
    if result.measured is None:
        return "n/a"
    return f"{_number(result.measured)} {result.unit}".rstrip()


def table(results: Iterable[Result], *, title: str = "replicator benchmarks") -> Table:
    grid = Table(title=title, show_lines=False)
    grid.add_column("benchmark", style="bold")
    grid.add_column("figure")
    grid.add_column("measured", justify="right")
    grid.add_column("goal", justify="right")
    grid.add_column("verdict", justify="center")
    grid.add_column("note", style="dim", overflow="fold", max_width=80)
    for result in results:
        verdict = {True: "[green]pass", False: "[red]FAIL", None: "[dim]-"}[result.passed]
        note = result.note
        if result.unreachable:
            verdict, note = "[yellow]unreachable", f"{result.unreachable}; {note}".rstrip("; ")
        goal = result.goal.text if result.goal else ""
        grid.add_row(result.benchmark, result.figure, shown(result), goal, verdict, note)
    return grid


def print_table(results: Iterable[Result], console: Console | None = None) -> None:
    if console is None:
        console = Console(width=max(Console().width, TABLE_WIDTH))
    console.print(table(results))


def write_json(
    path: Path, results: Iterable[Result], *, context: Mapping[str, Any], seconds: float
) -> None:
    document = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "run": dict(context),
        "seconds": round(seconds, 1),
        "results": [result.as_json() for result in results],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
