"""Expiring keys are refreshed in botocore's windows without stalling the requests.

The provider is botocore's own ``RefreshableCredentials`` on a clock the test moves,
behind ``CredentialChain``'s ``resolve`` seam; its refresh blocks until the test lets it
answer, so a request that waited for it could not have returned.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from dataclasses import dataclass, field

import pytest
from botocore.credentials import RefreshableCredentials

from replicator.aws.credentials import CredentialChain, Key

pytestmark = pytest.mark.timeout(10)
START = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
WAIT = 5.0  # seconds: a deadline, not a pause


@dataclass
class Provider:
    """Keys that live ``lifetime`` from each fetch; the refresh waits for ``gate``."""

    lifetime: datetime.timedelta = datetime.timedelta(hours=1)
    now: datetime.datetime = START
    fetches: int = 0
    failing: bool = False
    gate: threading.Event = field(default_factory=threading.Event)
    fetching: threading.Event = field(default_factory=threading.Event)

    def clock(self) -> float:
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)

    def resolve(self) -> RefreshableCredentials:
        metadata = self._metadata()
        return RefreshableCredentials(
            metadata["access_key"],
            metadata["secret_key"],
            metadata["token"],
            self.now + self.lifetime,
            refresh_using=self._refresh,
            method="test",
            time_fetcher=lambda: self.now,  # botocore's windows run on the test's clock
        )

    def _refresh(self) -> dict[str, str]:
        self.fetches += 1
        self.fetching.set()
        assert self.gate.wait(WAIT), "the test never let the refresh answer"
        if self.failing:
            raise ConnectionError("the credential service did not answer")
        return self._metadata()

    def _metadata(self) -> dict[str, str]:
        return {
            "access_key": f"AKID{self.fetches}",
            "secret_key": f"secret-{self.fetches}",
            "token": f"token-{self.fetches}",
            "expiry_time": (self.now + self.lifetime).isoformat(),
        }


@pytest.fixture(autouse=True)
def no_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


async def chain_of(provider: Provider) -> CredentialChain:
    """A chain holding the provider's first keys, on the provider's clock."""
    chain = CredentialChain(provider.resolve, clock=provider.clock)
    key = await chain.key()
    assert key is not None and key.id == "AKID0"
    return chain


@pytest.fixture
def provider() -> Provider:
    return Provider()


async def test_in_the_advisory_window_one_caller_refreshes_and_none_waits(
    provider: Provider,
) -> None:
    chain = await chain_of(provider)
    provider.advance(minutes=48)  # 12 minutes left: advisory, not mandatory
    keys = await asyncio.wait_for(asyncio.gather(*(chain.key() for _ in range(50))), WAIT)
    assert {key.id for key in keys if key} == {"AKID0"}  # signed on while the fetch runs
    assert await asyncio.to_thread(provider.fetching.wait, WAIT)
    assert provider.fetches == 1
    provider.gate.set()
    provider.advance(minutes=4)  # mandatory now: wait for that same fetch, start no other
    refreshed = await asyncio.wait_for(chain.key(), WAIT)
    assert refreshed is not None and refreshed.id == "AKID1"
    assert provider.fetches == 1


async def test_in_the_mandatory_window_callers_wait_for_one_refresh(
    provider: Provider,
) -> None:
    chain = await chain_of(provider)
    provider.advance(minutes=52)  # 8 minutes left: mandatory
    waiting = [asyncio.ensure_future(chain.key()) for _ in range(20)]
    assert await asyncio.to_thread(provider.fetching.wait, WAIT)
    await asyncio.sleep(0)  # let every caller reach the fetch; none may pass it
    assert not any(task.done() for task in waiting)
    provider.gate.set()
    keys = await asyncio.wait_for(asyncio.gather(*waiting), WAIT)
    assert {key.id for key in keys if key} == {"AKID1"}
    assert provider.fetches == 1


async def test_the_same_near_expiry_keys_are_not_fetched_for_every_request(
    provider: Provider,
) -> None:
    provider.gate.set()
    chain = await chain_of(provider)
    provider.lifetime = datetime.timedelta(minutes=8)  # served inside the mandatory window
    provider.advance(minutes=52)
    for _ in range(100):  # 100 s of requests, one a second
        key = await chain.key()
        assert key is not None and key.id == "AKID1"
        provider.advance(seconds=1)
    assert provider.fetches == 1  # botocore alone would have fetched for each of them
    provider.advance(minutes=7)  # AKID1 expired: its replacement is waited for
    key = await chain.key()
    assert key is not None and key.id == "AKID2"
    assert provider.fetches == 2


async def test_a_refused_key_is_looked_up_anew_even_if_its_source_holds_it_valid(
    provider: Provider,
) -> None:
    provider.gate.set()
    chain = await chain_of(provider)
    provider.fetches = 7  # the next chain resolved serves other keys
    chain.invalidate(Key("AKID0", "secret-0", "token-0"))
    key = await chain.key()
    assert key is not None and key.id == "AKID7"


async def test_a_refresh_failing_in_the_advisory_window_is_not_retried_for_every_request(
    provider: Provider,
) -> None:
    chain = await chain_of(provider)
    provider.advance(minutes=48)
    provider.failing = True
    provider.gate.set()
    for _ in range(100):  # 100 s of requests: the keys still sign, one fetch was tried
        key = await chain.key()
        assert key is not None and key.id == "AKID0"
        await asyncio.to_thread(provider.fetching.wait, WAIT)
        provider.advance(seconds=1)
    assert provider.fetches == 1
