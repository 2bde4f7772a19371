"""The signing keys of the lean clients: the standard AWS credential chain.

Keys in the environment (Lambda, CI, an operator's shell) are read here, with no import
on the start-up path. Anything else is botocore's own provider chain, loaded on first
use: profiles with roles, SSO and ``credential_process``, web identity (EKS service
accounts), the ECS task role and the instance role, in the SDK's order and with its
refresh. A chain of our own would drift from the SDK's and silently pick another
identity, such as the node's instance role where a pod's web identity was meant.

Keys that expire are refreshed in botocore's two windows (``RefreshableCredentials``):
15 minutes before expiry one caller starts a refresh, in a thread, while every request
goes on signing with the current keys; from 10 minutes before expiry (or with no keys)
requests wait for that one refresh. Before, every request of the first window ran its
own blocking fetch, one after another, and throughput collapsed for minutes. A provider
that serves the same near-expiry keys again (an instance metadata endpoint that cannot
reach its credential service) is asked again only after a jittered 2-10 minutes, the
interval botocore's instance metadata fetcher waits in that case; expired keys are
always fetched for.

A key DynamoDB refused as expired while its source still thinks it valid (revoked, or
the source's clock is wrong) is looked up through a new chain: asking the same source
would hand back the same keys. The refused request goes through the retry policy, so
a key refused again is retried with backoff, never in a hot loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from replicator.errors import AwsError

log = logging.getLogger(__name__)

# botocore's RefreshableCredentials windows, seconds before expiry.
ADVISORY_SECONDS = 15 * 60
MANDATORY_SECONDS = 10 * 60
# botocore's InstanceMetadataFetcher jitter before asking again for near-expiry keys.
REFETCH_SECONDS = (2 * 60, 10 * 60)
# Keys living longer than this count as never expiring (2**24 s: 194 days).
LONGEST_SECONDS = 2**24


@dataclass(frozen=True, slots=True)
class Key:
    """One set of signing keys; the secret and token never appear in a repr or a log."""

    id: str
    secret: str = field(repr=False)
    token: str | None = field(repr=False, default=None)


class Frozen(Protocol):
    """botocore's ``ReadOnlyCredentials``."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...


class Source(Protocol):
    """botocore's ``Credentials``; ``RefreshableCredentials`` also has ``refresh_needed``."""

    def get_frozen_credentials(self) -> Frozen: ...


def _botocore_chain() -> Source | None:
    """botocore's credentials (refreshing where the source expires), or None."""
    from botocore.session import get_session

    source: Source | None = get_session().get_credentials()
    return source


class CredentialChain:
    """Environment keys, else botocore's chain; shared by every client of a process.

    ``resolve`` builds the chain (botocore's); ``clock`` is unix time, for tests.
    """

    def __init__(
        self,
        resolve: Callable[[], Source | None] = _botocore_chain,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolve = resolve
        self._clock = clock
        self._source: Source | None = None
        self._key: Key | None = _environment_key()
        self._from_environment = self._key is not None
        # When the key expires, and until when it signs with no further thought.
        self._expires_at = math.inf if self._from_environment else -math.inf
        self._refresh_at = self._expires_at
        self._fetch: asyncio.Task[AwsError | None] | None = None
        self._stale_source = False

    async def key(self) -> Key | None:
        """The key to sign with now; None when no source in the chain has one."""
        key = self._key
        if key is not None and self._clock() < self._refresh_at:
            return key
        return await self._checked(key)

    async def aclose(self) -> None:
        """Stop waiting for a fetch still running (idempotent); its thread ends on its own."""
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetch

    def invalidate(self, refused: Key) -> None:
        """``refused`` was refused as expired: look it up anew before the next request."""
        if self._from_environment or refused != self._key:
            return  # environment keys cannot change; another request already did this
        self._key = None
        self._stale_source = True

    async def _checked(self, key: Key | None) -> Key | None:
        now = self._clock()
        if key is not None and now < self._expires_at - MANDATORY_SECONDS:
            self._fetching()  # one caller's fetch, in the background
            return key
        failure = await asyncio.shield(self._fetching())
        if failure is not None:
            raise failure
        return self._key

    def _fetching(self) -> asyncio.Task[AwsError | None]:
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.get_running_loop().create_task(self._refreshed())
        return self._fetch

    async def _refreshed(self) -> AwsError | None:
        """Fetch the key (the SDK's providers block: off the loop); the failure, if any.

        A failure is returned, not raised: a background fetch has nobody awaiting it.
        """
        anew, self._stale_source = self._stale_source, False
        try:
            key, lifetime = await asyncio.to_thread(self._freeze, anew)
        except AwsError as exc:
            now = self._clock()
            if now < self._expires_at - MANDATORY_SECONDS:
                # Nobody waits for an advisory fetch, so its failure is told here; as
                # botocore does, the keys sign on and the fetch is tried again later.
                log.warning("%s; the current keys sign on until the mandatory window", exc)
                retry_at = now + random.uniform(*REFETCH_SECONDS)
                self._refresh_at = min(self._expires_at - MANDATORY_SECONDS, retry_at)
            return exc
        now = self._clock()
        self._key, self._expires_at = key, now + lifetime
        self._refresh_at = self._expires_at - ADVISORY_SECONDS
        if self._refresh_at <= now:
            self._refresh_at = min(self._expires_at, now + random.uniform(*REFETCH_SECONDS))
        return None

    def _freeze(self, anew: bool) -> tuple[Key | None, float]:
        """The source's key and how long it lives, in seconds."""
        try:
            if self._source is None or anew:
                self._source = self._resolve()
                if self._source is None:
                    # No source at all: the caller's NoCredentialsError says so.
                    return None, -math.inf
            # In a window, botocore's RefreshableCredentials refreshes here.
            frozen = self._source.get_frozen_credentials()
        except Exception as exc:
            # A source that failed to answer (STS, SSO, a metadata endpoint) may answer the
            # next attempt; the retry policy waits it out and names it while it lasts.
            raise AwsError(
                f"credentials could not be obtained: {type(exc).__name__}: {exc}",
                code="Credentials",
                retryable=True,
            ) from exc
        key = Key(frozen.access_key, frozen.secret_key, frozen.token)
        return key, _lifetime(self._source)


def _lifetime(source: Source) -> float:
    """Seconds the source's keys live, to the second; inf for keys that never expire.

    botocore keeps the expiry private; its public ``refresh_needed(s)`` says whether
    fewer than ``s`` seconds are left, so the lifetime is found by bisection.
    """
    refresh_needed: Callable[[int], bool] | None = getattr(source, "refresh_needed", None)
    if refresh_needed is None or not refresh_needed(LONGEST_SECONDS):
        return math.inf
    if refresh_needed(0):
        return 0.0  # expired: botocore raises before handing these out
    low, high = 0, LONGEST_SECONDS  # at least ``low`` left, fewer than ``high``
    while high - low > 1:
        middle = (low + high) // 2
        if refresh_needed(middle):
            high = middle
        else:
            low = middle
    return float(low)


def _environment_key() -> Key | None:
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    return Key(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
