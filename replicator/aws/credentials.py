"""The signing keys of the lean clients: the standard AWS credential chain.

Keys in the environment (Lambda, CI, an operator's shell) are read here, with no import
on the start-up path. Anything else is botocore's own provider chain, loaded on first
use: profiles with roles, SSO and ``credential_process``, web identity (EKS service
accounts), the ECS task role and the instance role, in the SDK's order and with its
refresh. A chain of our own would drift from the SDK's and silently pick another
identity, such as the node's instance role where a pod's web identity was meant.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from replicator.errors import AwsError


@dataclass(frozen=True, slots=True)
class Key:
    """One set of signing keys; the secret and token never appear in a repr or a log."""

    id: str
    secret: str = field(repr=False)
    token: str | None = field(repr=False, default=None)


def _botocore_chain() -> Any:
    """botocore's credentials (refreshing where the source expires), or None."""
    from botocore.session import get_session

    return get_session().get_credentials()


class CredentialChain:
    """Environment keys, else botocore's chain; shared by every client of a process."""

    def __init__(self, resolve: Callable[[], Any] = _botocore_chain) -> None:
        self._resolve = resolve
        self._source: Any = None
        self._key: Key | None = _environment_key()
        self._from_environment = self._key is not None
        self._lock = asyncio.Lock()

    async def key(self) -> Key | None:
        """The key to sign with now; None when no source in the chain has one."""
        key = self._key
        if key is not None and (self._from_environment or not self._expiring()):
            return key
        async with self._lock:  # one lookup for the requests that all found it missing
            if self._key is None or self._expiring():
                # The SDK's providers block (files, STS, metadata endpoints): off the loop.
                self._key = await asyncio.to_thread(self._freeze)
            return self._key

    def invalidate(self) -> None:
        """Refused as expired: look the key up again before the next request."""
        if not self._from_environment:
            self._key = None

    def _expiring(self) -> bool:
        refresh_needed = getattr(self._source, "refresh_needed", None)
        return bool(refresh_needed is not None and refresh_needed())

    def _freeze(self) -> Key | None:
        try:
            if self._source is None:
                self._source = self._resolve()
                if self._source is None:
                    return None  # no source at all: the caller's NoCredentialsError says so
            frozen = self._source.get_frozen_credentials()
        except Exception as exc:
            # A source that failed to answer (STS, SSO, a metadata endpoint) may answer the
            # next attempt; the retry policy waits it out and names it while it lasts.
            raise AwsError(
                f"credentials could not be obtained: {type(exc).__name__}: {exc}",
                code="Credentials",
                retryable=True,
            ) from exc
        return Key(frozen.access_key, frozen.secret_key, frozen.token)


def _environment_key() -> Key | None:
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    return Key(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
