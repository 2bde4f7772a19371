"""``LeaseKeeper``: watches, takes, renews and releases one source table's lease.

It is also the pipeline's fence: ``may_write()`` is asked before every target write,
dead-letter write and checkpoint (see ``replicator.ha.fence``). The decisions are the pure
functions of ``replicator.ha.lease``; this class only does the I/O and keeps the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

from replicator.aws.backoff import Backoff, pause
from replicator.aws.retry import RetryObserver, RetryPolicy
from replicator.errors import AwsError, ShutdownInterrupted
from replicator.ha.lease import (
    LeaseRecord,
    LeaseState,
    LeaseTimes,
    Sighting,
    may_take,
    may_write,
    sight,
    state_of,
)

log = logging.getLogger(__name__)

RETRY_BACKOFF = Backoff(base=0.1, cap=1.0)
LEASE_CALL = "lease"
T = TypeVar("T")


class LeaseIO(Protocol):
    """What the keeper needs from the control table (``replicator.ha.store.LeaseStore``)."""

    async def read(self, source_table: str) -> LeaseRecord | None: ...

    async def swap(
        self, source_table: str, expected: LeaseRecord | None, owner: str
    ) -> LeaseRecord | None: ...


def process_owner() -> str:
    """This process's name in lease items: host, pid and a random part (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _ignore(state: LeaseState, holder: str) -> None:
    return None


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseIO,
        source_table: str,
        *,
        owner: str,
        times: LeaseTimes,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[LeaseState, str], None] = _ignore,
        observer: RetryObserver | None = None,
        region: str = "",
    ) -> None:
        """``observer`` hears of failing lease calls (the service's metrics and /readyz)."""
        self.source_table = source_table
        self.owner = owner
        self._store = store
        self._times = times
        self._clock = clock
        self._on_change = on_change
        self._observer = observer
        self._region = region
        self._held: LeaseRecord | None = None
        self._renewed_at: float | None = None  # when the last successful renewal was sent
        self._sighting: Sighting | None = None
        self._ending: asyncio.Event | None = None  # the tenure's, while one runs

    @property
    def state(self) -> LeaseState:
        return state_of(self._held, self._renewed_at, self._clock(), self._times)

    def may_write(self) -> bool:
        if self._held is not None and may_write(self._renewed_at, self._clock(), self._times):
            return True
        if self._ending is not None:
            self._ending.set()
        return False

    @contextlib.contextmanager
    def tenure(self, ending: asyncio.Event) -> Iterator[None]:
        """While in the block, a write refused by the fence sets ``ending``.

        A refused write interrupts its lane, which then drops every later batch; a
        renewal landing late (its answer straddled the fence) would let the process hold
        the lease with lanes that never write again. So the refusal ends the tenure, and
        the next one resumes from the checkpoints.
        """
        self._ending = ending
        try:
            yield
        finally:
            self._ending = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Stand by until this process holds the lease; False when ``stop`` came first."""
        retry = self._retry_until(stop)
        while not stop.is_set():
            if self.may_write():
                return True
            try:
                await retry.call(LEASE_CALL, self._region, self.look)
            except ShutdownInterrupted:
                return False
            if self.may_write():
                return True
            if await pause(self._next_look(), stop):
                return False
        return False

    async def hold(self, tenure: asyncio.Event, done: asyncio.Event) -> None:
        """Renew until ``done``; set ``tenure`` (stop replicating) once writes are fenced."""
        retry = self._retry_until(done)

        async def fence() -> None:  # before every attempt: a failing renewal still fences
            if not self.may_write():
                tenure.set()

        while not done.is_set():
            try:
                await retry.call(LEASE_CALL, self._region, self.renew, before=fence)
            except ShutdownInterrupted:
                return
            await fence()
            wait = self._times.renew_every
            if self._renewed_at is not None:
                # Wake at the fence too, so the pipeline stops reading as the fence closes.
                fence_at = self._renewed_at + self._times.fence_after
                wait = max(0.0, min(wait, fence_at - self._clock()))
            if await pause(wait, done):
                return

    async def release(self) -> None:
        """Give the lease up after the last write, so a standby takes over at once."""
        if self._held is None:
            return
        held, self._held = self._held, None
        try:
            # A release that never lands only makes the standby wait the full lease.
            released = await self._call(self._store.swap(self.source_table, held, ""))
        except AwsError as exc:
            log.warning(
                "lease on %s not released (%s): a standby waits it out", self.source_table, exc
            )
            return
        if released is not None:
            log.info("released the lease on %s", self.source_table)
            self._report(LeaseState.RELEASED, "")

    async def look(self) -> None:
        """One standby step: read the lease and take it if it may be taken."""
        record = await self._call(self._store.read(self.source_table))
        now = self._clock()
        self._sighting = sight(self._sighting, record, now)
        # Our own name there: a take or renewal whose answer was lost; renewing it is safe.
        ours = record is not None and record.owner == self.owner
        if not ours and not may_take(self._sighting, now, self._times):
            self._report(LeaseState.WATCHING, record.owner if record else "")
            return
        sent = self._clock()
        taken = await self._call(self._store.swap(self.source_table, record, self.owner))
        if taken is None:
            return  # another standby was first; watch the new counter
        self._hold_from(taken, sent)
        previous = f"from {record.owner}" if record and record.owner else "(free)"
        log.info("took the lease on %s %s: active", self.source_table, previous)

    async def renew(self) -> None:
        """One holder step: move the counter, or learn that the lease was lost."""
        held = self._held
        if held is None:
            return
        sent = self._clock()
        renewed = await self._call(self._store.swap(self.source_table, held, self.owner))
        if renewed is not None:
            self._hold_from(renewed, sent)
            return
        record = await self._call(self._store.read(self.source_table))
        if record is not None and record.owner == self.owner:
            # Our previous renewal landed but its answer was lost: keep holding that counter,
            # timed from the older send.
            self._held = record
            return
        self._held, self._renewed_at = None, None
        self._sighting = sight(None, record, self._clock())
        holder = record.owner if record else ""
        log.warning("lost the lease on %s to %s: standing by", self.source_table, holder or "none")
        self._report(LeaseState.WATCHING, holder)

    def _hold_from(self, record: LeaseRecord, sent: float) -> None:
        self._held, self._renewed_at = record, sent
        self._report(LeaseState.HOLDING, self.owner)

    def _next_look(self) -> float:
        """How long a standby waits before reading again: a poll, or until it may take."""
        every = self._times.renew_every / 2
        sighting = self._sighting
        if sighting is None or sighting.record is None or not sighting.record.owner:
            return every
        due = sighting.since + self._times.duration - self._clock()
        return max(0.0, min(every, due))

    def _retry_until(self, stop: asyncio.Event) -> RetryPolicy:
        # The one policy, with a short backoff: a renewal is tried again well before the
        # fence closes, and a standby notices a free lease within a second.
        return RetryPolicy(stop=stop, observer=self._observer, backoff=RETRY_BACKOFF)

    async def _call(self, request: Awaitable[T]) -> T:
        """One lease request, bounded by the write timeout like every other write."""
        try:
            async with asyncio.timeout(self._times.write_timeout):
                answer = await request
        except TimeoutError:
            raise AwsError(
                f"no answer within {self._times.write_timeout:g} s (lease.write_timeout_seconds)",
                code="Timeout",
                retryable=True,
            ) from None
        return answer

    def _report(self, state: LeaseState, holder: str) -> None:
        self._on_change(state, holder)
