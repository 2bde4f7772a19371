"""Every scenario of ``replicator chaos``, by name, in the order the suite runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from chaos import process_scenarios as proc
from chaos.httpfaults import STREAMS_TARGET, FaultKind
from chaos.kinesis_scenarios import PLANS as KINESIS_PLANS
from chaos.kinesis_scenarios import kinesis_one_way
from chaos.outcome import Result
from chaos.scenario import Context, Scenario
from chaos.stream_scenarios import PLANS, run_stream

Run = Callable[[Context, str], Awaitable[Result]]


def _one_way(schedule: proc.Schedule) -> Run:
    return partial(proc.one_way, schedule=schedule)


async def _stream(ctx: Context, name: str) -> Result:
    return await run_stream(ctx, name, PLANS[name])


async def _kinesis(ctx: Context, name: str) -> Result:
    return await kinesis_one_way(ctx, name, KINESIS_PLANS[name][1](ctx.seed))


_PROCESS: list[tuple[str, str, Run]] = [
    (
        "throttling",
        "ThrottlingException on a share of requests to both regions",
        _one_way(proc.http_errors(FaultKind.THROTTLING)),
    ),
    (
        "throughput-exceeded",
        "ProvisionedThroughputExceededException on a share of requests",
        _one_way(proc.http_errors(FaultKind.THROUGHPUT)),
    ),
    (
        "streams-limit-exceeded",
        "LimitExceededException on a share of Streams API calls",
        _one_way(proc.http_errors(FaultKind.LIMIT_EXCEEDED, only=STREAMS_TARGET, boost=2.5)),
    ),
    (
        "http-500",
        "500 with a JSON body on a share of requests",
        _one_way(proc.http_errors(FaultKind.SERVER_ERROR)),
    ),
    (
        "http-503-html",
        "503 with an HTML body on a share of requests",
        _one_way(proc.http_errors(FaultKind.UNAVAILABLE)),
    ),
    (
        "connection-reset",
        "a share of requests answered by a TCP reset",
        _one_way(proc.http_errors(FaultKind.RESET)),
    ),
    (
        "latency-jitter",
        "50 ms each way plus up to 150 ms of jitter",
        _one_way(proc.proxy_faults("latency with jitter", proc.latency)),
    ),
    (
        "bandwidth-cap",
        "16 KB/s per connection and direction",
        _one_way(proc.proxy_faults("bandwidth cap", proc.bandwidth)),
    ),
    (
        "target-blackhole",
        "the target region accepts connections and never answers, then heals",
        _one_way(
            proc.proxy_faults("target blackhole", proc.target_blackhole, regions=(proc.TARGET,))
        ),
    ),
    (
        "kill-9-restart",
        "the replicator is killed with SIGKILL twice and restarted",
        _one_way(proc.kill_and_restart),
    ),
    (
        "sigstop-sigcont",
        "the replicator is frozen with SIGSTOP, then continued",
        _one_way(proc.stop_and_continue),
    ),
    (
        "poison-items",
        "an oversized item, an unversioned one, a version of the wrong type",
        _one_way(proc.poison),
    ),
    (
        "three-region-writers",
        "active-active: concurrent writers in three regions, wide-area latency between them",
        partial(
            proc.three_regions, schedule=proc.proxy_faults("wide-area latency", proc.wide_area)
        ),
    ),
]

_STREAM_SUMMARIES = {
    "stream-split-mid-backlog": "the shard splits in the middle of a backlog",
    "stream-expired-iterator": "every third read finds its iterator expired",
    "stream-trimmed-data": "records age out unread: the alarm must fire, later writes converge",
    "stream-duplicate-reorder": "older ranges delivered again after newer records",
    "stream-throttled": "GetRecords throttled and target writes throttled",
    "stream-origins-reorder": "active-active: one origin's stream arrives long after another's",
}

SCENARIOS: dict[str, Scenario] = {
    **{name: Scenario(name, "process", summary, run) for name, summary, run in _PROCESS},
    **{name: Scenario(name, "stream", _STREAM_SUMMARIES[name], _stream) for name in PLANS},
    **{
        name: Scenario(name, "process", summary, _kinesis)
        for name, (summary, _) in KINESIS_PLANS.items()
    },
}


def select(names: str) -> list[Scenario]:
    """``all``, or scenario names separated by commas; a clear error for an unknown one."""
    if names == "all":
        return list(SCENARIOS.values())
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    for name in chosen:
        if name not in SCENARIOS:
            raise ValueError(
                f"no scenario {name!r}: run `replicator chaos --list` for the names, or use all"
            )
    return [SCENARIOS[name] for name in chosen]
