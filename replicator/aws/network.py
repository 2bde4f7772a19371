"""How the lean clients reach an endpoint: the proxy and the CAs the AWS SDK would use.

The environment is read as botocore reads it, so one deployment's settings serve the
tools (botocore) and ``replicator run`` (``http_pool``) alike:

- ``HTTP_PROXY`` for http endpoints, ``HTTPS_PROXY`` for https ones (either case, lower
  case first), skipped for the hosts ``NO_PROXY`` names: botocore asks
  ``urllib.request.getproxies()`` and ``proxy_bypass()`` with the endpoint's host:port,
  and so do we, so loopback is proxied too unless ``NO_PROXY`` says otherwise. A proxy
  URL without a scheme is ``http://``; ``user:password@`` in it becomes a
  ``Proxy-Authorization: Basic`` header, and is never put in a message or a log.
- An http endpoint is asked through the proxy by its absolute URL; an https endpoint
  through a ``CONNECT`` tunnel, with TLS to the endpoint inside it.
- ``AWS_CA_BUNDLE``, else ``ca_bundle`` in the profile's section of the shared config
  file: the only CAs trusted for https endpoints (else the system's).

``urllib.request`` costs tens of milliseconds to import: it is imported only when a
proxy variable is set, and a process without one pays nothing, at start-up or per request.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote

from yarl import URL

from replicator.errors import ConfigError

CA_BUNDLE = "AWS_CA_BUNDLE"
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy"})


@dataclass(frozen=True, slots=True)
class Proxy:
    """The proxy an endpoint is reached through."""

    host: str
    port: int
    variable: str  # the setting it came from, for messages: HTTP_PROXY or HTTPS_PROXY
    # "Proxy-Authorization: ...\r\n" when the URL carried credentials; kept out of any repr.
    authorization: str = field(default="", repr=False)

    def __str__(self) -> str:
        return f"proxy {self.host}:{self.port} ({self.variable})"

    def refused(self) -> ConfigError:
        """The proxy answered 407: it wants credentials, or other ones."""
        sent = "refused the credentials in" if self.authorization else "wants credentials in"
        return ConfigError(
            f"{self} {sent} {self.variable}: set it to http://user:password@host:port "
            "(407 Proxy Authentication Required)"
        )


def proxy_for(endpoint: URL) -> Proxy | None:
    """The proxy the environment names for ``endpoint``, as botocore picks it; None if none."""
    if not any(name.lower() in _PROXY_VARIABLES for name in os.environ):
        return None
    from urllib.request import getproxies, proxy_bypass

    netloc = endpoint.raw_authority
    if proxy_bypass(netloc):
        return None
    url = getproxies().get(str(endpoint.scheme))
    if not url:
        return None
    variable = f"{endpoint.scheme.upper()}_PROXY"
    if not url.startswith(("http:", "https:")):  # botocore's reading of "host:port"
        url = "http:" + url if url.startswith("//") else "http://" + url
    parsed = URL(url)
    if parsed.scheme != "http" or not parsed.host:
        raise ConfigError(
            f"{variable}: only an http:// proxy with a host is supported, not "
            f"{parsed.with_user(None)}"
        )
    authorization = ""
    if parsed.raw_user and parsed.raw_password:
        pair = f"{unquote(parsed.raw_user)}:{unquote(parsed.raw_password)}"
        authorization = f"Proxy-Authorization: Basic {base64.b64encode(pair.encode()).decode()}\r\n"
    return Proxy(parsed.host, parsed.port or 80, variable, authorization)


def tls_context() -> ssl.SSLContext:
    """Verification for https endpoints: the CAs of ``AWS_CA_BUNDLE``, else of the profile's
    ``ca_bundle`` in the shared config file (botocore's order), else the system's."""
    setting, bundle = ca_bundle()
    try:
        return _verifying(bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{setting}: {bundle!r} is not a readable PEM bundle of CA certificates ({exc})"
        ) from None


def ca_bundle() -> tuple[str, str | None]:
    """(the setting that names it, the CA bundle to trust); None: the system's CAs."""
    bundle = os.environ.get(CA_BUNDLE)
    return (CA_BUNDLE, bundle) if bundle else _profile_ca_bundle()


@functools.lru_cache(maxsize=4)
def _verifying(bundle: str | None) -> ssl.SSLContext:
    # One context for every pool of the process: loading a bundle cost ~20 ms of CPU, and a
    # service with a few targets has a pool per target table and per service and region.
    return ssl.create_default_context(cafile=bundle)


def _profile_ca_bundle() -> tuple[str, str | None]:
    """(where it was found, ``ca_bundle``) of the profile in force, read as botocore reads it."""
    path = os.path.expanduser(
        os.path.expandvars(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    )
    if not os.path.isfile(path):
        return CA_BUNDLE, None
    import configparser  # only where a config file exists

    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable AWS config file ({exc})") from None
    sections = [f"profile {profile}", *(["default"] if profile == "default" else [])]
    for section in sections:
        if parser.has_option(section, "ca_bundle"):
            return f"{path} [{section}] ca_bundle", parser.get(section, "ca_bundle") or None
    return CA_BUNDLE, None


def unverified(endpoint: str, exc: ssl.SSLCertVerificationError) -> ConfigError:
    """The one loud line for an endpoint whose certificate does not verify (DESIGN §5)."""
    setting, bundle = ca_bundle()
    now = f"{setting} is {bundle!r}" if bundle else f"{CA_BUNDLE} is not set: the system's CAs"
    return ConfigError(
        f"the TLS certificate of {endpoint} does not verify ({exc.verify_message or exc}): "
        f"set {CA_BUNDLE} to a PEM bundle with the CA that signed it ({now}); not retried"
    )


class _Handshake(asyncio.Protocol):
    """The proxy's answer to CONNECT: its head, up to the empty line."""

    def __init__(self) -> None:
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end >= 0 and not self.head.done():
            self.head.set_result(bytes(self._buffer[:end]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError("the proxy closed the connection"))


async def tunnel(proxy: Proxy, authority: str) -> asyncio.Transport:
    """A connection through ``proxy`` to ``authority`` (host:port), for TLS to begin on.

    Raises ``ConnectionError`` when the proxy cannot or will not connect (retryable: the
    proxy or the endpoint may be back soon), ``ConfigError`` when it wants credentials.
    """
    loop = asyncio.get_running_loop()
    transport, handshake = await loop.create_connection(_Handshake, proxy.host, proxy.port)
    try:
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{proxy.authorization}\r\n"
        transport.write(request.encode())
        status_line = (await handshake.head).split(b"\r\n", 1)[0].decode("latin-1")
    except BaseException:
        transport.close()
        raise
    code = status_line.split(" ", 2)[1] if status_line.count(" ") else ""
    if code.startswith("2"):
        return transport
    transport.close()
    if code == "407":
        raise proxy.refused()
    raise ConnectionError(f"{proxy} answered CONNECT {authority} with {status_line[:80]!r}")
