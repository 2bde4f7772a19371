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


def chart(result: Result) -> str:
    """Lag over time as an inline SVG; red lines at faults, green at the heal."""
    samples, marks = result.timeline.samples, result.timeline.marks
    end = max([t for t, _ in samples] + [t for t, _ in marks] + [1.0])
    top = max([lag for _, lag in samples] + [1.0])
    width, height = CHART_WIDTH - 2 * MARGIN, CHART_HEIGHT - 2 * MARGIN

    def x(t: float) -> float:
        return MARGIN + width * t / end

    def y(lag: float) -> float:
        return MARGIN + height * (1 - lag / top)

    points = " ".join(f"{x(t):.1f},{y(lag):.1f}" for t, lag in samples)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" '
        f'height="{CHART_HEIGHT}" role="img" aria-label="lag of {html.escape(result.name)}">',
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{width}" height="{height}" '
        'fill="#fafafa" stroke="#ccc"/>',
        f'<text x="4" y="{MARGIN - 8}" font-size="11">lag s (max {top:.1f})</text>',
        f'<text x="{CHART_WIDTH - MARGIN}" y="{CHART_HEIGHT - 8}" font-size="11" '
        f'text-anchor="end">{end:.0f} s</text>',
    ]
    for t, label in marks:
        colour = "#2a2" if label in ("heal", "restarted") else "#c22"
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{MARGIN}" y2="{MARGIN + height}" '
            f'stroke="{colour}" stroke-dasharray="4 3"><title>{html.escape(label)} at '
            f"{t:.1f} s</title></line>"
            f'<text x="{x(t) + 2:.1f}" y="{MARGIN + 10}" font-size="10" fill="{colour}">'
            f"{html.escape(label.removeprefix('fault: ').split(' ')[0])}</text>"
        )
    if points:
        parts.append(f'<polyline fill="none" stroke="#25c" stroke-width="1.5" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> Path:
    sections = []
    for result in results:
        verdict = "pass" if result.passed else "FAIL"
        failures = "".join(f"<li>{html.escape(f)}</li>" for f in result.failures)
        marks = ", ".join(
            f"{html.escape(label)} at {t:.1f} s" for t, label in result.timeline.marks
        )
        sections.append(
            f'<section><h2>{html.escape(result.name)} <span class="{verdict}">{verdict}</span>'
            f"</h2><p>faults injected: {html.escape(_faults(result))}; writes {result.writes}; "
            f"differences {result.diff.differences}, lost {result.diff.lost}, resurrected "
            f"{result.diff.resurrected}; max lag {_seconds(result.timeline.max_lag)} s; "
            f"recovery {_seconds(result.timeline.recovery)} s</p><p>{marks}</p>"
            f"{chart(result)}<ul>{failures}</ul></section>"
        )
    summary = html.escape(json.dumps(meta))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>replicator chaos</title>"
        "<style>body{font-family:sans-serif;margin:2em}.pass{color:#2a2}.FAIL{color:#c22}"
        "section{margin-bottom:2em}</style></head><body><h1>replicator chaos</h1>"
        f"<p>{summary}</p>{''.join(sections)}</body></html>"
    )
    path.write_text(page)
    return path
