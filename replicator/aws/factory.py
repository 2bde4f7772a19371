"""The clients every part of replicator talks to AWS through, one per (service, region).

Errors they raise are read by ``replicator.aws.classify`` alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from replicator.aws.accounts import RegionCredentials, chains_for
from replicator.aws.clock import ServerClock
from replicator.aws.credentials import CredentialChain
from replicator.aws.http_pool import AUTO_CEILING
from replicator.aws.json_client import CONNECT_TIMEOUT_SECONDS, JsonClient, send_guard

if TYPE_CHECKING:
    from botocore.config import Config as BotoConfig

READ_TIMEOUT_SECONDS = 20
# The pool of each service's client in a region (stream reads, control-table writes).
POOL_CONNECTIONS = 256

def boto_config(agent: str | None) -> BotoConfig:
    """aiobotocore's settings; built on first use: botocore.config alone cost 40 ms to import.

    Retries are ours (jittered, bounded, counted); botocore's own would hide throttling.
    ``total_max_attempts`` counts the first attempt: ``max_attempts: 1`` still retried once.
    """
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_pool_connections=POOL_CONNECTIONS,
        user_agent_extra=agent,
    )


class RegionEndpoints(Protocol):
    """One region's endpoint per service, as ``replicator.yaml``'s ``endpoints:`` holds it."""

    def url(self, service: str) -> str | None:
        """The URL named for ``service`` (``dynamodb``, ``dynamodbstreams``), if any."""
        ...


# Per region: one URL for both services (moto, DynamoDB Local), or one per service.
Endpoints = Mapping[str, str | RegionEndpoints]


class Deployment(Protocol):
    """What ``Clients.for_config`` reads of ``replicator.yaml`` (``config.schema.Config``)."""

    @property
    def endpoints(self) -> Mapping[str, RegionEndpoints]: ...
    @property
    def credentials(self) -> Mapping[str, RegionCredentials]: ...


def region_of(client: Any) -> str:
    """The region an aiobotocore client (or ``JsonClient``) talks to, for log lines."""
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "region_name", None) or getattr(client, "region", ""))


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


def _check_send_guard(**_: Any) -> None:
    # botocore's last hook before the HTTP send; returning None lets the request go.
    guard = send_guard.get()
    if guard is not None:
        guard()


class Clients:
    """Creates clients per (service, region), honouring endpoint overrides.

    ``json`` and ``put_client`` are the lean clients ``replicator run`` uses
    (``replicator.json_client``); ``get`` gives aiobotocore's, for the tools that page
    through tables. aiobotocore directly, not through aioboto3: importing boto3 on top
    cost start-up time and nothing here uses its resources; it is imported on first use.

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
        self._clients: dict[tuple[str, str], Any] = {}
        self._json: dict[tuple[str, str], JsonClient] = {}
        self._targets: dict[tuple[str, str], JsonClient] = {}
        self._session: Any = None
        self._credentials: CredentialChain | None = None
        self._clock = ServerClock()  # one skew for the host, whichever client measured it
        for chain in dict.fromkeys(self._chains.values()):
            self._stack.push_async_callback(chain.aclose)

    @classmethod
    def for_config(cls, config: Deployment, *, agent: str | None = None) -> Clients:
        """The clients of a ``replicator.yaml``: its endpoints and its credentials."""
        return cls(config.endpoints, agent=agent, credentials=config.credentials)

    async def get(self, service: str, region: str) -> Any:
        """An aiobotocore client for ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._clients:
            if self._session is None:
                from aiobotocore.session import get_session

                self._session = get_session()
            client = self._session.create_client(
                service,
                region_name=region,
                endpoint_url=self._endpoint(service, region),
                config=boto_config(self._agent),
                **await self._keys_of(region),
            )
            self._clients[key] = await self._stack.enter_async_context(client)
            self._clients[key].meta.events.register("before-send", _check_send_guard)
        return self._clients[key]

    async def _keys_of(self, region: str) -> dict[str, str | None]:
        # aiobotocore's clients (the tools, until they move to the lean ones) take a
        # region's keys as they are when the client is made: an hour for a role's.
        chain = self._chains.get(region)
        key = await chain.key() if chain is not None else None
        if key is None:
            return {}
        return {
            "aws_access_key_id": key.id,
            "aws_secret_access_key": key.secret,
            "aws_session_token": key.token,
        }

    async def json(self, service: str, region: str) -> JsonClient:
        """A lean client for ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._json:
            self._json[key] = await self._json_client(region, POOL_CONNECTIONS, service=service)
        return self._json[key]

    async def put_client(
        self,
        region: str,
        table: str = "",
        *,
        connections: int = AUTO_CEILING,
        guard: Callable[[], None] | None = None,
    ) -> JsonClient:
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
            self._targets[key] = await self._json_client(region, connections)
        return self._targets[key].guarded(guard)

    async def _json_client(
        self,
        region: str,
        connections: int,
        *,
        service: str = "dynamodb",
    ) -> JsonClient:
        credentials = self._chains.get(region)
        if credentials is None:
            if self._credentials is None:
                self._credentials = CredentialChain()
                self._stack.push_async_callback(self._credentials.aclose)
            credentials = self._credentials
        client = JsonClient(
            region,
            self._endpoint(service, region),
            credentials=credentials,
            connections=connections,
            service=service,
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
        self._clients.clear()
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
