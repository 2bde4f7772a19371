"""Runs chaos scenarios one after another on a shared embedded backend and reports.

Every scenario is bounded: its phases by its ``Budget``, the whole of it by a deadline
derived from that budget. A scenario that raises or overruns is a failed row, never a
stopped suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chaos.catalog import select
from chaos.outcome import Result
from chaos.report import write_html, write_json
from chaos.scenario import FULL, QUICK, Budget, Context, Scenario, Seams
from replicator.demo.embedded import embedded_backend, embedded_credentials

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
Progress = Callable[[Result], None]


@dataclass
class SuiteReport:
    results: list[Result] = field(default_factory=list)
    json_path: Path | None = None
    html_path: Path | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.passed for result in self.results)


def scenario_deadline(budget: Budget) -> float:
    """The longest one scenario may take: every phase, startup and shutdown, with margin."""
    phases = budget.warm + budget.before + budget.blackhole + 4 * budget.fault + budget.after
    return phases + budget.drain + 90


async def run_scenarios(
    scenarios: Sequence[Scenario], ctx: Context, *, progress: Progress | None = None
) -> list[Result]:
    results = []
    for scenario in scenarios:
        results.append(await _run_one(scenario, ctx))
        if progress is not None:
            progress(results[-1])
    return results


async def _run_one(scenario: Scenario, ctx: Context) -> Result:
    started = time.monotonic()
    try:
        async with asyncio.timeout(scenario_deadline(ctx.budget)):
            return await scenario.run(ctx, scenario.name)
    except TimeoutError:
        error = f"overran its {time.monotonic() - started:.0f} s deadline"
    except Exception as exc:  # a failed row, with the cause, rather than a stopped suite
        error = "".join(traceback.format_exception_only(exc)).strip()
    result = Result(scenario.name, scenario.kind)
    result.error = error
    return result


def run_suite(
    names: str,
    *,
    quick: bool,
    seed: int,
    out: Path,
    seams: Seams | None = None,
    endpoints: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> SuiteReport:
    """Run ``names`` (``all`` or a comma-separated list) and write the JSON and HTML reports.

    Without ``endpoints`` a moto server per region is started for the run and stopped after.
    """
    scenarios = select(names)
    budget = QUICK if quick else FULL
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with embedded_credentials(), contextlib.ExitStack() as stack:
        if endpoints is None:
            servers = stack.enter_context(embedded_backend(REGIONS))
            endpoints = {region: server.endpoint for region, server in servers.items()}
        ctx = Context(budget, seed, out / "chaos-logs", endpoints, seams or Seams())
        results = asyncio.run(run_scenarios(scenarios, ctx, progress=progress))
    report = SuiteReport(results, seconds=time.monotonic() - started)
    meta = {"seed": seed, "quick": quick, "seconds": round(report.seconds, 1)}
    report.json_path = write_json(out / "chaos-report.json", results, meta)
    report.html_path = write_html(out / "chaos-report.html", results, meta)
    return report
