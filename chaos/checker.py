"""Model-based convergence checker: random histories with faults against the real rules.

Each history runs writers and replicators in the in-memory model (``chaos.model``), with
duplicated, delayed, crashed-and-replayed and late (lost lease) deliveries and TTL expiries,
then stops the writers, drains every replicator and checks that

1. every region shows the same visible state (tombstone == absent, ``_rep_`` ignored);
2. that state is the last-writer-wins winner computed from the history alone;
3. no region re-sent an echo;
4. active-active with writers that keep the contract: no version regression, and
   ``is_version_regression`` (the metric) counts none either.

``chaos.histories`` drives a history, ``chaos.verdict`` judges it; this module runs many.

    python -m chaos.checker --histories 5000 --seed 0

With ``--feed`` it measures the conflict feed against ground truth instead (``chaos.feed``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chaos import feed
from chaos.histories import mode_for, run_history
from chaos.verdict import Failure, Result


def check(
    histories: int,
    seed: int,
    *,
    deadline: float | None = None,
    max_failures: int = 10,
    ignore: frozenset[str] = frozenset(),
    on_result: Callable[[Result, bool], None] | None = None,
) -> list[Failure]:
    """Run ``histories`` histories with seeds ``seed``, ``seed + 1``, ...; the failures.

    Stops early at ``deadline`` (a ``time.monotonic`` value) or after ``max_failures``;
    violations whose kind is in ``ignore`` do not fail a history.
    """
    failures: list[Failure] = []
    for history_seed in range(seed, seed + histories):
        if deadline is not None and time.monotonic() > deadline:
            break
        result = run_history(history_seed, mode=mode_for(history_seed))
        violations = [v for v in result.violations if v.kind not in ignore]
        if on_result is not None:
            on_result(result, bool(violations))
        if violations:
            failures.append(Failure(result.seed, result.mode, violations, result.trace))
            if len(failures) >= max_failures:
                break
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.checker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--histories", type=int, default=1000, help="how many histories")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first history")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="time budget")
    parser.add_argument("--trace", action="store_true", help="print every history's steps")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KIND",
        help="a violation kind that does not fail a history (repeatable), e.g. not-lww",
    )
    parser.add_argument(
        "--feed",
        action="store_true",
        help="measure the conflict feed over active-active histories (DESIGN §4b)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="--feed: write figures here")
    parser.add_argument(
        "--no-tombstone-expiry",
        dest="tombstone_expiry",
        action="store_false",
        help="--feed: histories in which TTL removes no tombstone (the issue's histories)",
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    if args.feed:
        deadline = time.monotonic() + args.max_seconds
        return feed.report(
            args.histories,
            args.seed,
            deadline=deadline,
            path=args.json,
            console=console,
            trace=args.trace,
            tombstone_expiry=args.tombstone_expiry,
        )
    counts = {"run": 0, "failed": 0}
    started = time.monotonic()
    with Progress(
        TextColumn("histories"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("check", total=args.histories, failed=0)

        def on_result(result: Result, failed: bool) -> None:
            counts["run"] += 1
            counts["failed"] += failed
            progress.update(task, advance=1, failed=counts["failed"])
            if args.trace:
                trace = "\n".join(result.trace)
                progress.console.print(trace, markup=False, highlight=False, soft_wrap=True)

        failures = check(
            args.histories,
            args.seed,
            deadline=started + args.max_seconds,
            ignore=frozenset(args.ignore),
            on_result=on_result,
        )
    for failure in failures[:3]:
        console.print(str(failure), markup=False, highlight=False, soft_wrap=True)
    elapsed = time.monotonic() - started
    summary = f"{counts['run']} histories in {elapsed:.1f} s, {len(failures)} failed"
    if counts["run"] < args.histories and not failures:
        summary += f" (time budget reached before {args.histories})"
    console.print(summary, markup=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
