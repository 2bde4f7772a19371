"""The suite's reports: a rich table, ``chaos-report.json`` and a self-contained HTML page
with a lag-over-time chart per scenario (inline SVG, fault and heal times marked)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from chaos.outcome import Result

CHART_WIDTH, CHART_HEIGHT, MARGIN = 640, 180, 36


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _faults(result: Result) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(result.faults.items())) or "-"


def table(results: Sequence[Result]) -> Table:
    grid = Table(title="replicator chaos")
    for column in (
        "scenario",
        "faults injected",
        "writes",
        "differences",
        "lost",
        "resurrected",
        "max lag s",
        "recovery s",
        "verdict",
    ):
        numeric = column not in ("scenario", "faults injected", "verdict")
        grid.add_column(column, justify="right" if numeric else "left")
    for result in results:
        grid.add_row(
            result.name,
            _faults(result),
            str(result.writes),
            str(result.diff.differences),
            str(result.diff.lost),
            str(result.diff.resurrected),
            _seconds(result.timeline.max_lag),
            _seconds(result.timeline.recovery),
            "[green]pass[/green]" if result.passed else "[red]FAIL[/red]",
        )
    return grid


def write_json(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> Path:
    document = {
        **meta,
        "passed": all(r.passed for r in results),
        "scenarios": [r.as_json() for r in results],
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


FAULT, HEALED, NOTE = "#c22", "#2a2", "#666"
LABEL_HEIGHT, CHAR_WIDTH = 12, 6.2  # px of one label row, of one 10 px character (estimate)


def _colour(label: str) -> str:
    if label.startswith("fault: "):
        return FAULT
    return HEALED if label in ("heal", "restarted") else NOTE


def fault_windows(marks: Sequence[tuple[float, str]], end: float) -> list[tuple[float, float]]:
    """From each fault until the next heal or restart (or the chart's end): the shaded spans."""
    windows: list[tuple[float, float]] = []
    opened: float | None = None
    for t, label in sorted(marks):
        if label.startswith("fault: ") and opened is None:
            opened = t
        elif _colour(label) == HEALED and opened is not None:
            windows.append((opened, t))
            opened = None
    if opened is not None:
        windows.append((opened, end))
    return windows


def label_rows(placed: Sequence[tuple[float, str]]) -> list[int]:
    """A row per label (x, text) so that no two labels of a row overlap: first row that fits."""
    rows_end: list[float] = []
    rows = []
    for x, text in placed:
        width = len(text) * CHAR_WIDTH + 6
        row = next((i for i, end in enumerate(rows_end) if end <= x), len(rows_end))
        if row == len(rows_end):
            rows_end.append(0.0)
        rows_end[row] = x + width
        rows.append(row)
    return rows


def chart(result: Result) -> str:
    """Lag over time as an inline SVG: fault windows shaded, each mark labelled in full."""
    samples, marks = result.timeline.samples, sorted(result.timeline.marks)
    end = max([t for t, _ in samples] + [t for t, _ in marks] + [1.0])
    top = max([lag for _, lag in samples] + [1.0])
    width = CHART_WIDTH - 2 * MARGIN

    def x(t: float) -> float:
        return MARGIN + width * t / end

    texts = [label.removeprefix("fault: ") for _, label in marks]
    rows = label_rows([(x(t), text) for (t, _), text in zip(marks, texts, strict=True)])
    plot_top = MARGIN + LABEL_HEIGHT * (max(rows, default=-1) + 1)
    height = CHART_HEIGHT - 2 * MARGIN

    def y(lag: float) -> float:
        return plot_top + height * (1 - lag / top)

    points = " ".join(f"{x(t):.1f},{y(lag):.1f}" for t, lag in samples)
    total = plot_top + height + MARGIN
    name = html.escape(result.name)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{total:.0f}" '
        f'role="img" aria-label="lag of {name}" data-chart="{name}">',
        f'<rect x="{MARGIN}" y="{plot_top}" width="{width}" height="{height}" '
        'fill="#fafafa" stroke="#ccc"/>',
        f'<text x="4" y="14" font-size="11">lag s (max {top:.1f})</text>',
        f'<text x="{CHART_WIDTH - MARGIN}" y="{total - 8:.0f}" font-size="11" '
        f'text-anchor="end">{end:.0f} s</text>',
    ]
    for start, stop in fault_windows(marks, end):
        parts.append(
            f'<rect class="fault-window" x="{x(start):.1f}" y="{plot_top}" '
            f'width="{max(1.0, x(stop) - x(start)):.1f}" height="{height}" fill="{FAULT}" '
            f'fill-opacity="0.12"><title>fault from {start:.1f} s to {stop:.1f} s</title></rect>'
        )
    for (t, label), text, row in zip(marks, texts, rows, strict=True):
        colour = _colour(label)
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{MARGIN + LABEL_HEIGHT * row}" '
            f'y2="{plot_top + height}" stroke="{colour}" stroke-dasharray="4 3"/>'
            f'<text class="mark" x="{x(t) + 2:.1f}" y="{MARGIN + LABEL_HEIGHT * row + 9}" '
            f'font-size="10" fill="{colour}"><title>{html.escape(label)} at {t:.1f} s</title>'
            f"{html.escape(text)}</text>"
        )
    if points:
        parts.append(f'<polyline fill="none" stroke="#25c" stroke-width="1.5" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def parameters(results: Sequence[Result], meta: dict[str, Any]) -> str:
    """The run in a sentence: how many passed, the seed, quick or full, how long."""
    passed = sum(r.passed for r in results)
    size = "quick run (short faults, small workload)" if meta.get("quick") else "full run"
    seconds = meta.get("seconds")
    took = f", {seconds:.0f} s in all" if isinstance(seconds, int | float) else ""
    return f"{passed} of {len(results)} scenarios passed. Seed {meta.get('seed')}, {size}{took}."


def summary_table(results: Sequence[Result]) -> str:
    head = "".join(f"<th>{column}</th>" for column in SUMMARY_COLUMNS)
    rows = []
    for result in results:
        verdict = "pass" if result.passed else "FAIL"
        cells = [
            f'<a href="#{html.escape(result.name)}">{html.escape(result.name)}</a>',
            f'<span class="{verdict}">{verdict}</span>',
            html.escape(_faults(result)),
            str(result.writes),
            str(result.diff.differences),
            str(result.diff.lost),
            str(result.diff.resurrected),
            _seconds(result.timeline.max_lag),
            _seconds(result.timeline.recovery),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


SUMMARY_COLUMNS = (
    "scenario", "verdict", "faults injected", "writes", "differences", "lost", "resurrected",
    "max lag s", "recovery s",
)  # fmt: skip
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}.pass{color:#2a2}"
    ".FAIL{color:#c22;font-weight:bold}section{margin-top:2em}table{border-collapse:collapse}"
    "th,td{padding:.25em .6em;border-bottom:1px solid #ddd}td:nth-child(n+4){text-align:right}"
)


def write_html(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> Path:
    sections = []
    for result in results:
        verdict = "pass" if result.passed else "FAIL"
        failures = "".join(f"<li>{html.escape(f)}</li>" for f in result.failures)
        name = html.escape(result.name)
        sections.append(
            f'<section id="{name}"><h2>{name} <span class="{verdict}">{verdict}</span></h2>'
            f"{chart(result)}<ul>{failures}</ul></section>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>replicator chaos</title>"
        f"<style>{STYLE}</style></head><body><h1>replicator chaos</h1>"
        f"{summary_table(results)}<p id='parameters'>{html.escape(parameters(results, meta))}</p>"
        f"{''.join(sections)}</body></html>"
    )
    path.write_text(page)
    return path
