"""The clients every part of replicator talks to AWS through, one per (service, region).

Errors they raise are read by ``replicator.aws.classify`` alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Literal, Protocol, TypeVar, overload

from replicator.aws.accounts import RegionCredentials, chains_for
from replicator.aws.clock import ServerClock
from replicator.aws.credentials import CredentialChain
from replicator.aws.http_pool import AUTO_CEILING
from replicator.aws.json_client import DynamoDB, JsonClient, Kinesis, Streams, send_guard

# The pool of each service's client in a region (stream reads, control-table writes).
POOL_CONNECTIONS = 256
_Client = TypeVar("_Client", bound=JsonClient)
_KINDS: dict[str, type[JsonClient]] = {kind.service: kind for kind in (DynamoDB, Streams, Kinesis)}


class RegionEndpoints(Protocol):
    """One region's endpoint per service, as ``replicator.yaml``'s ``endpoints:`` holds it."""

    def url(self, service: str) -> str | None:
        """The URL named for ``service`` (``dynamodb``, ``dynamodbstreams``, ``kinesis``)."""
        ...


# Per region: one URL for both services (moto, DynamoDB Local), or one per service.
Endpoints = Mapping[str, str | RegionEndpoints]


class Deployment(Protocol):
    """What ``Clients.for_config`` reads of ``replicator.yaml`` (``config.schema.Config``)."""

    @property
    def endpoints(self) -> Mapping[str, RegionEndpoints]: ...
    @property
    def credentials(self) -> Mapping[str, RegionCredentials]: ...


@contextlib.contextmanager
def guarded_send(guard: Callable[[], None] | None) -> Iterator[None]:
    """Run ``guard`` (it raises to refuse) right before each request of this block is sent."""
    if guard is None:
        yield
        return
    guard()
    token = send_guard.set(guard)
    try:
        yield
    finally:
        send_guard.reset(token)


class Clients:
    """Creates clients per (service, region), honouring endpoint overrides.

    ``json`` and ``put_client`` give the typed clients of ``aws.json_client``: ``replicator
    run``, the Lambda handler, the tools and the demo all talk to AWS through them.

    ``endpoints`` names a region's endpoint per service; a service without one is resolved
    as botocore resolves it (``replicator.aws.endpoints``: environment, AWS config, rules).

    Credentials come from the standard AWS chain (environment, profile, role), except in
    a region ``credentials`` names a role to assume or a profile for (``aws.accounts``);
    no key is ever read from replicator's config. ``agent`` is added to every request's
    User-Agent, so CloudTrail (and a test's proxy) can tell the processes of one
    deployment apart. Commands build theirs with ``for_config``, so none forgets either.
    """

    def __init__(
        self,
        endpoints: Endpoints | None = None,
        *,
        agent: str | None = None,
        credentials: Mapping[str, RegionCredentials] | None = None,
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._agent = agent
        self._chains = chains_for(credentials or {})
        self._stack = contextlib.AsyncExitStack()
        self._json: dict[tuple[str, str], JsonClient] = {}
        self._targets: dict[tuple[str, str], DynamoDB] = {}
        self._credentials: CredentialChain | None = None
        self._clock = ServerClock()  # one skew for the host, whichever client measured it
        for chain in dict.fromkeys(self._chains.values()):
            self._stack.push_async_callback(chain.aclose)

    @classmethod
    def for_config(cls, config: Deployment, *, agent: str | None = None) -> Clients:
        """The clients of a ``replicator.yaml``: its endpoints and its credentials."""
        return cls(config.endpoints, agent=agent, credentials=config.credentials)

    @overload
    async def json(self, service: Literal["dynamodb"], region: str) -> DynamoDB: ...
    @overload
    async def json(self, service: Literal["dynamodbstreams"], region: str) -> Streams: ...
    @overload
    async def json(self, service: Literal["kinesis"], region: str) -> Kinesis: ...
    async def json(self, service: str, region: str) -> JsonClient:
        """The client of ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._json:
            kind = _KINDS[service]
            self._json[key] = self._client(kind, region, POOL_CONNECTIONS)
        return self._json[key]

    async def put_client(
        self,
        region: str,
        table: str = "",
        *,
        connections: int = AUTO_CEILING,
        guard: Callable[[], None] | None = None,
    ) -> DynamoDB:
        """A client for replicated writes to ``table`` in ``region``, over that table's pool.

        The pool is created once per target table, sized by the first caller: the start-up
        check and every tenure's writes share its connections, so the first write finds
        the check's open. ``connections`` is the target's concurrency ceiling (the adaptive
        limit keeps fewer writes in flight). No pool is shared between targets, so they
        never cap one another. ``guard`` is called as each request of this client is sent
        and aborts it by raising.
        """
        key = (region, table)
        if key not in self._targets:
            self._targets[key] = self._client(DynamoDB, region, connections)
        return self._targets[key].guarded(guard)

    def _client(self, kind: type[_Client], region: str, connections: int) -> _Client:
        credentials = self._chains.get(region)
        if credentials is None:
            if self._credentials is None:
                self._credentials = CredentialChain()
                self._stack.push_async_callback(self._credentials.aclose)
            credentials = self._credentials
        client = kind(
            region,
            self._endpoint(kind.service, region),
            credentials=credentials,
            connections=connections,
            agent=self._agent,
            clock=self._clock,
        )
        self._stack.push_async_callback(client.aclose)
        return client

    def _endpoint(self, service: str, region: str) -> str | None:
        entry = self._endpoints.get(region)
        return entry if entry is None or isinstance(entry, str) else entry.url(service)

    async def aclose(self) -> None:
        """Close every client (idempotent)."""
        self._json.clear()
        self._targets.clear()
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def clients(endpoints: Endpoints | None = None) -> AsyncIterator[Clients]:
    factory = Clients(endpoints)
    try:
        yield factory
    finally:
        await factory.aclose()
