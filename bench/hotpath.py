"""Benchmark 7: where the hot path spends its CPU (pyinstrument), on benchmarks 1 and 2.

Each sample's time is charged to the innermost replicator function on its stack, so
"Metrics.lag" includes the OpenTelemetry histogram it calls and "ConditionalWriter.put"
includes botocore; the event loop's own work and idle waits are listed apart. A second
view charges time to the library whose code ran. Full reports go to ``bench/profiles/``.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame

from bench.backlog import prepare, unique
from bench.drain import pipeline_drain
from bench.env import Backend
from bench.fakes import filled_fake_stream
from bench.overhead import drain_once, fixture_frozen
from bench.results import Result
from bench.ui import progress

NAME = "7 hot path"
PROFILES = Path(__file__).resolve().parent / "profiles"
INTERVAL_SECONDS = 0.0005
TOP = 6
Seconds = collections.defaultdict[str, float]
IDLE = "(idle: waiting for I/O)"
LOOP = "(asyncio event loop)"
AREAS = {  # site-packages folder -> what to call it
    "opentelemetry": "OpenTelemetry SDK",
    "yarl": "aiohttp",
    "multidict": "aiohttp",
    "aiohappyeyeballs": "aiohttp",
    "propcache": "aiohttp",
}


def _is_idle(frame: Frame) -> bool:
    """The event loop waiting in epoll (or select): no CPU spent."""
    path = frame.file_path or ""
    if path == "<built-in>":
        return frame.function.endswith(("epoll.poll", "select.select", "poll.poll"))
    return path.endswith("selectors.py") and frame.function == "select"


def _owner(frame: Frame) -> str | None:
    path = frame.file_path or ""
    if "/replicator/" not in path:
        return None
    owner = frame.class_name + "." if frame.class_name else ""
    if frame.function.startswith("<"):  # a lambda or comprehension: name its module too
        owner = path.rsplit("/replicator/", 1)[1].removesuffix(".py").replace("/", ".") + ":"
    return owner + frame.function


def _area(frame: Frame, caller: str) -> str:
    """The library whose code ran; a C function counts for the library that called it."""
    path = frame.file_path or ""
    if path.startswith("<"):
        return caller
    if "/site-packages/" in path:
        package = path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return AREAS.get(package, package)
    if "/replicator/" in path:
        return "replicator"
    if "/bench/" in path:
        return "bench doubles"
    if "/python3." in path:
        module = path.rsplit("/python3.", 1)[1].split("/")[1].removesuffix(".py")
        return "asyncio" if module == "asyncio" else f"stdlib {module}"
    return "other"


def attribute(root: Frame) -> tuple[Seconds, Seconds]:
    """(seconds per owning replicator function, seconds per library), idle apart."""
    owners: Seconds = collections.defaultdict(float)
    areas: Seconds = collections.defaultdict(float)
    stack: list[tuple[Frame, str, str]] = [(root, LOOP, "asyncio")]
    while stack:
        frame, owner, area = stack.pop()
        if frame.is_synthetic:
            continue
        owner = _owner(frame) or owner
        area = _area(frame, area)
        spent = frame.total_self_time
        if _is_idle(frame):
            owners[IDLE] += spent
            areas[IDLE] += spent
        else:
            owners[owner] += spent
            areas[area] += spent
        stack.extend((child, owner, area) for child in frame.children)
    return owners, areas


def _save(path: Path, report: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)


async def profiled(
    name: str, work: Callable[[], Awaitable[Any]], *, directory: Path = PROFILES
) -> list[Result]:
    profiler = Profiler(interval=INTERVAL_SECONDS, async_mode="disabled")
    profiler.start()
    try:
        await work()
    finally:
        session = profiler.stop()
    _save(directory / f"{name}.txt", profiler.output_text(unicode=True, color=False))
    root = session.root_frame()
    if root is None:
        return []
    owners, areas = attribute(root)
    busy = sum(seconds for key, seconds in owners.items() if key != IDLE) or 1.0
    shares = {key: seconds / busy * 100 for key, seconds in owners.items() if key != IDLE}
    libraries = ", ".join(
        f"{area} {seconds / busy:.0%}"
        for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1])
        if area != IDLE and seconds / busy >= 0.02
    )
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:TOP]
    return [
        Result(
            NAME,
            f"{name}: {owner}",
            share,
            "% CPU",
            None,
            f"by library: {libraries}; report bench/profiles/{name}.txt" if rank == 0 else "",
            {"owners_pct": shares, "idle_s": owners[IDLE], "busy_s": busy} if rank == 0 else {},
        )
        for rank, (owner, share) in enumerate(top)
    ]


async def profile_overhead(records: int = 20_000, *, directory: Path = PROFILES) -> list[Result]:
    stream = filled_fake_stream(records)
    with (
        progress(f"[7] profiling benchmark 1 on {records:,} records", total=1) as done,
        fixture_frozen(),  # as benchmark 1 measures: the backlog fixture is not our heap
    ):
        results = await profiled(
            "overhead", lambda: drain_once(stream, records), directory=directory
        )
        done(1)
    return results


async def profile_drain(
    backend: Backend, records: int = 3_000, *, directory: Path = PROFILES
) -> list[Result]:
    source_table, target_table = unique("profile-source"), unique("profile-target")
    await prepare(backend, source_table, [target_table], backlog=records)
    return await profiled(
        "drain",
        lambda: pipeline_drain(backend, source_table, target_table, records),
        directory=directory,
    )
