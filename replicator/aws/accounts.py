"""Credentials per region (``credentials:``): a role to assume, or a named profile.

Each entry becomes a ``CredentialChain`` of its own, whose source is botocore's:
``AssumeRoleCredentialFetcher`` behind ``RefreshableCredentials`` for a role
(assumed from the default chain, through STS in the region assumed into, refreshed in
botocore's windows), a botocore session for a profile. Regional STS, its endpoint
(``AWS_ENDPOINT_URL_STS`` included), the session's own STS retries and the refresh are
the SDK's; a role cannot be assumed across partitions, so a region of another partition
takes a profile.

STS's answer is read by ``aws.classify``: a throttle or an outage is retried like any
call, a refusal (AccessDenied, a malformed ARN, no keys to assume it with) is
``CredentialsRefused``, a configuration error naming the region and the role: ``replicator``
exits 2 with that line rather than retrying what cannot succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from replicator.aws.classify import classify
from replicator.aws.credentials import CredentialChain, Frozen, Source
from replicator.errors import AwsError, CredentialsRefused

if TYPE_CHECKING:
    from botocore.session import Session

DEFAULT_SESSION_NAME = "replicator"


class RegionCredentials(Protocol):
    """One entry of ``credentials:`` (``config.credentials.RegionCredentials``)."""

    @property
    def role_arn(self) -> str | None: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def session_name(self) -> str | None: ...
    @property
    def profile(self) -> str | None: ...


ROLE_FIX = "check the role's trust policy, the external_id and the caller's sts:AssumeRole"
PROFILE_FIX = "check the profile in the AWS config files"


@dataclass(frozen=True, slots=True)
class Identity:
    """A region's entry as errors name it, and what to check when it is refused."""

    name: str
    fix: str

    @classmethod
    def of(cls, region: str, entry: RegionCredentials) -> Identity:
        if entry.profile is not None:
            return cls(f"credentials.{region}: profile {entry.profile!r}", PROFILE_FIX)
        return cls(f"credentials.{region}: role {entry.role_arn}", ROLE_FIX)

    def failed(self, exc: Exception) -> AwsError:
        """``exc`` named for this identity: retryable as ``aws.classify`` says, else refused."""
        try:
            error = classify(exc)
        except Exception:  # not an AWS error: a profile's own problem (missing, malformed)
            error = AwsError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)
        if error.retryable:
            return AwsError(f"{self.name}: {error}", code=error.code, retryable=True)
        return CredentialsRefused(
            f"{self.name}: cannot be used ({error}) — {self.fix}", code=error.code
        )


class _Told:
    """A botocore source whose failures name the region and identity they were for."""

    def __init__(self, source: Source, identity: Identity) -> None:
        self._source = source
        self._identity = identity

    def get_frozen_credentials(self) -> Frozen:
        try:
            return self._source.get_frozen_credentials()
        except Exception as exc:
            raise self._identity.failed(exc) from exc

    def refresh_needed(self, refresh_in: int | None = None) -> bool:
        needed: Callable[[int | None], bool] | None = getattr(self._source, "refresh_needed", None)
        return needed is not None and needed(refresh_in)


def _assumed_role(region: str, entry: RegionCredentials, base: Session) -> Source:
    from botocore.credentials import AssumeRoleCredentialFetcher, RefreshableCredentials
    from botocore.exceptions import NoCredentialsError

    source = base.get_credentials()
    if source is None:
        raise NoCredentialsError()
    extra = {"RoleSessionName": entry.session_name or DEFAULT_SESSION_NAME}
    if entry.external_id is not None:
        extra["ExternalId"] = entry.external_id

    def sts(service: str, **keys: str | None) -> object:
        # STS in the region assumed into: its regional endpoint, in that region's partition.
        return base.create_client(service, region_name=region, **keys)

    fetcher = AssumeRoleCredentialFetcher(sts, source, str(entry.role_arn), extra_args=extra)
    # The first AssumeRole here (``resolve`` is already called on first need, off the
    # loop), not deferred: botocore logs a deferred first fetch's refusal with a traceback,
    # and the refusal is already one line. Refreshes are botocore's, in its windows.
    first = fetcher.fetch_credentials()
    assumed: Source = RefreshableCredentials.create_from_metadata(
        first, fetcher.fetch_credentials, "assume-role"
    )
    return assumed


def _resolver(region: str, entry: RegionCredentials) -> Callable[[], Source | None]:
    identity = Identity.of(region, entry)

    def resolve() -> Source | None:
        from botocore.session import Session

        try:
            if entry.profile is not None:
                found: Source | None = Session(profile=entry.profile).get_credentials()
                if found is None:
                    raise LookupError(f"profile {entry.profile!r} holds no credentials")
                return _Told(found, identity)
            return _Told(_assumed_role(region, entry, Session()), identity)
        except AwsError:
            raise
        except Exception as exc:
            raise identity.failed(exc) from exc

    return resolve


def chains_for(credentials: Mapping[str, RegionCredentials]) -> dict[str, CredentialChain]:
    """A chain per region named in ``credentials``; regions sharing an entry share it."""
    shared: dict[RegionCredentials, CredentialChain] = {}
    chains: dict[str, CredentialChain] = {}
    for region, entry in credentials.items():
        if entry not in shared:
            # Keys in the environment are the default chain's, never an assumed role's.
            shared[entry] = CredentialChain(_resolver(region, entry), environment=False)
        chains[region] = shared[entry]
    return chains
