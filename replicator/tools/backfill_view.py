"""The backfill's progress bar: items scanned, items/s and the time left."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichBackfillView:
    """A rich progress bar per source table; notes print above it."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} items/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichBackfillView:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def started(self, source_table: str, *, total: int | None, done: int) -> None:
        # ItemCount is DynamoDB's estimate (refreshed about every six hours): the bar's
        # end may move, and it is left open when the table reports no count.
        self._task = self._progress.add_task(
            f"backfill {source_table}",
            total=max(total, done) if total else None,
            completed=done,
            rate="-",
        )

    def advance(self, items: int) -> None:
        if self._task is None:
            return
        self._progress.advance(self._task, items)
        task = self._progress.tasks[self._task]
        if task.total is not None and task.completed > task.total:
            self._progress.update(self._task, total=task.completed)
        speed = task.speed
        self._progress.update(self._task, rate=f"{speed:,.0f}" if speed else "-")

    def note(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, soft_wrap=True)
