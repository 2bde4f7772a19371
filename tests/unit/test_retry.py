"""The one retry policy (DESIGN §5): faults are waited out, reported and never hidden."""

from __future__ import annotations

import asyncio
import logging

import pytest

from replicator.aws.backoff import Backoff
from replicator.aws.retry import TOOL_GIVE_UP_AFTER_SECONDS, RetryPolicy, giving_up_after
from replicator.errors import (
    AwsError,
    GaveUp,
    RequestError,
    ShutdownInterrupted,
    ThrottledError,
)
from replicator.telemetry.metrics import Metrics

pytestmark = pytest.mark.timeout(10)

DOWN = AwsError("connection failed: reset by peer", code="Connection", retryable=True)


class Clock:
    """Fake time: every retry wait advances it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def wait(self, seconds: float, stop: asyncio.Event) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
        return stop.is_set()


class Observer:
    def __init__(self) -> None:
        self.failing: list[tuple[str, str, str]] = []
        self.recovered: list[tuple[str, str]] = []

    def call_failing(self, call: str, region: str, error: AwsError) -> None:
        self.failing.append((call, region, error.code))

    def call_recovered(self, call: str, region: str) -> None:
        self.recovered.append((call, region))


class Flaky:
    """Fails with ``error`` the first ``times`` calls, then answers ``"ok"``."""

    def __init__(self, error: Exception, times: int) -> None:
        self.error, self.times, self.calls = error, times, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "ok"


def policy(clock: Clock, observer: Observer | None = None, **options: object) -> RetryPolicy:
    return RetryPolicy(
        observer=observer,
        backoff=Backoff(base=0.1, cap=10.0),
        wait=clock.wait,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


async def test_a_region_down_for_an_hour_is_waited_out_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, observer = Clock(), Observer()
    outage = Flaky(DOWN, times=1000)
    with caplog.at_level(logging.WARNING, logger="replicator.aws.retry"):
        answer = await policy(clock, observer).call("target write", "eu-west-1", outage)

    assert answer == "ok" and outage.calls == 1001
    assert clock.now > 3600, "the outage lasted over an hour of (fake) time"
    assert max(clock.waits) <= 10.0, "backoff is capped"
    assert len(observer.failing) == 1000
    assert set(observer.failing) == {("target write", "eu-west-1", "Connection")}
    assert observer.recovered == [("target write", "eu-west-1")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Rate-limited: one line per 30 s of outage, each naming the call and the region.
    assert 100 <= len(warnings) <= clock.now / 30 + 1
    assert all("target write in eu-west-1" in line for line in warnings)


async def test_a_retry_warning_carries_the_call_region_attempt_and_reason_as_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # JSON logs (``--log-format json``) write these as fields a log query can filter on.
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="replicator.aws.retry"):
        await policy(clock).call("GetRecords", "us-east-1", Flaky(DOWN, times=3))
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    fields = {name: getattr(warning, name, None) for name in ("call", "region", "attempt")}
    assert fields == {"call": "GetRecords", "region": "us-east-1", "attempt": 1}
    assert getattr(warning, "reason", None) == "Connection"


async def test_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    clock = Clock()
    await policy(clock).call("GetRecords", "us-east-1", Flaky(ThrottledError("slow"), times=9))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    assert all(c / 2 <= d <= c for d, c in zip(clock.waits, ceilings, strict=True))


@pytest.mark.parametrize(
    "error",
    [
        AwsError("not authorized", code="AccessDeniedException"),
        RequestError("Invalid ConditionExpression", code="ValidationException"),
    ],
)
async def test_a_non_retryable_error_is_raised_after_one_attempt(error: AwsError) -> None:
    clock, observer = Clock(), Observer()
    attempt = Flaky(error, times=1)
    with pytest.raises(type(error)):
        await policy(clock, observer).call("checkpoint save", "us-east-1", attempt)
    assert attempt.calls == 1 and not observer.failing


async def test_an_attempt_that_never_answers_is_timed_out_and_retried() -> None:
    clock, observer = Clock(), Observer()
    calls = 0

    async def blackholed_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # accepted, never answered
        return "ok"

    retry = policy(clock, observer, attempt_timeout=0.05)
    assert await retry.call("DescribeStream", "us-east-1", blackholed_once) == "ok"
    assert calls == 2
    assert observer.failing == [("DescribeStream", "us-east-1", "Timeout")]


async def test_cancelling_the_caller_is_not_taken_for_a_timeout() -> None:
    clock, observer = Clock(), Observer()

    async def never() -> str:
        await asyncio.Event().wait()
        return "never"

    call = asyncio.create_task(policy(clock, observer).call("GetRecords", "us-east-1", never))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not observer.failing


async def test_stop_ends_the_waiting_with_shutdown_interrupted() -> None:
    clock, stop = Clock(), asyncio.Event()
    attempt = Flaky(DOWN, times=1000)

    async def until_stopped() -> str:
        if attempt.calls == 3:
            stop.set()
        return await attempt()

    with pytest.raises(ShutdownInterrupted, match="DLQ put in us-east-1"):
        await policy(clock, stop=stop).call("DLQ put", "us-east-1", until_stopped)
    assert attempt.calls == 4


@pytest.mark.parametrize("ending", ["shutdown", "not retryable"])
async def test_a_call_given_up_no_longer_reads_as_failing(ending: str) -> None:
    # A tenure ends (HA) or a fault turns out not retryable mid-outage: the next tenure's
    # policy never sees this streak succeed, so /readyz would have stayed false for good.
    clock, stop = Clock(), asyncio.Event()
    metrics = Metrics(clock=clock)
    attempts = 0

    async def attempt() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 3:
            if ending == "shutdown":
                stop.set()
            else:
                raise RequestError("a request of ours DynamoDB refused", code="Validation")
        raise DOWN

    retry = RetryPolicy(stop=stop, observer=metrics, wait=clock.wait, clock=clock)
    with pytest.raises((ShutdownInterrupted, RequestError)):
        await retry.call("GetRecords", "us-east-1", attempt)
    clock.now += 60  # long past the 5 s after which a failing call turns /readyz false
    assert metrics.ready() == (True, "ok")


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "RequestLimitExceeded",
    ],
)
def test_every_throttling_code_moves_the_retry_and_the_throttle_counters(code: str) -> None:
    metrics = Metrics()
    try:
        metrics.call_failing("GetRecords", "us-east-1", ThrottledError("slow down", code=code))
        metrics.call_failing("GetRecords", "us-east-1", DOWN)
        text = metrics.prometheus_text().decode()
    finally:
        metrics.shutdown()
    assert metrics.total("retries") == 2
    throttled = [line for line in text.splitlines() if line.startswith("replicator_records_thr")]
    assert len(throttled) == 1 and f'reason="{code}"' in throttled[0]
    assert throttled[0].endswith(" 1.0")


async def test_a_pacing_wait_comes_before_every_attempt_and_outside_its_deadline() -> None:
    clock, observer = Clock(), Observer()
    paced = 0

    async def slow_turn() -> None:
        # A rate cap's wait, longer than an attempt may take: it must not read as a
        # target that did not answer.
        nonlocal paced
        paced += 1
        await asyncio.sleep(0.1)

    attempt = Flaky(ThrottledError("slow down", code="ThrottlingException"), times=2)
    retry = policy(clock, observer, attempt_timeout=0.05)
    assert await retry.call("target write", "eu-west-1", attempt, before=slow_turn) == "ok"
    assert (paced, attempt.calls) == (3, 3)
    assert [code for _, _, code in observer.failing] == ["ThrottlingException"] * 2


async def test_a_tools_policy_gives_up_after_its_bound_naming_the_call_and_the_last_error() -> None:
    clock, observer = Clock(), Observer()
    outage = Flaky(DOWN, times=10_000)
    with pytest.raises(GaveUp) as raised:
        await policy(clock, observer, give_up_after=120.0).call("scan orders", "eu-west-1", outage)

    assert 120.0 <= clock.now <= 121.0, "gives up at the bound, never a wait past it"
    assert str(raised.value).startswith("scan orders in eu-west-1 failed for 120 s")
    assert "last error: connection failed: reset by peer" in str(raised.value)
    assert not raised.value.retryable and raised.value.code == "Connection"
    assert observer.recovered == [("scan orders", "eu-west-1")]  # the streak is over


async def test_the_bound_counts_consecutive_failures_a_success_starts_it_again() -> None:
    clock = Clock()
    bounded = policy(clock, give_up_after=60.0)
    for _ in range(5):  # 5 outages of 21-43 s: over 100 s failing, never 60 s in a row
        began = clock.now
        assert await bounded.call("verify get", "us-east-1", Flaky(DOWN, times=10)) == "ok"
        assert 20 < clock.now - began < 60
    assert bounded.give_up_after == 60.0


async def test_policies_built_inside_giving_up_after_are_bounded_and_the_service_never() -> None:
    assert RetryPolicy().give_up_after is None  # `replicator run`: retries without end
    with giving_up_after(TOOL_GIVE_UP_AFTER_SECONDS):
        assert RetryPolicy().give_up_after == TOOL_GIVE_UP_AFTER_SECONDS

        async def build_in_a_task() -> float | None:
            return RetryPolicy(stop=asyncio.Event()).give_up_after

        assert await asyncio.create_task(build_in_a_task()) == TOOL_GIVE_UP_AFTER_SECONDS
    assert RetryPolicy().give_up_after is None
