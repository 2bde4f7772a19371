"""Where a DynamoDB, DynamoDB Streams or Kinesis request goes and how it is signed, as botocore
decides.

For one service (``dynamodb``, ``dynamodbstreams``, ``kinesis``) in one region, the first of
these wins:

1. the endpoint ``replicator.yaml`` names for that service and region (``endpoints:``), as
   an ``endpoint_url`` given to botocore's ``create_client`` would;
2. a configured endpoint, read by botocore's own provider: ``AWS_ENDPOINT_URL_DYNAMODB`` or
   ``AWS_ENDPOINT_URL_DYNAMODB_STREAMS`` or ``AWS_ENDPOINT_URL_KINESIS`` (botocore's spelling:
   the service id, upper case, words joined by ``_``), then ``AWS_ENDPOINT_URL``, then the
   AWS config profile's ``services`` section and ``endpoint_url``; none of them when
   ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` (or ``ignore_configured_endpoint_urls``) is true;
3. botocore's endpoint rules for the service (its ``endpoint-rule-set-1`` and partition
   data, loaded at run time: ``.amazonaws.com.cn`` in China, GovCloud's hosts) with
   ``AWS_USE_FIPS_ENDPOINT`` and ``AWS_USE_DUALSTACK_ENDPOINT`` (or the profile's
   ``use_fips_endpoint``, ``use_dualstack_endpoint``). As in botocore, FIPS and dual-stack
   apply to the rules only, never to an endpoint given in 1 or 2.

The signing region and name are the rules' ``authSchemes`` when they give them, else the
region and the service's signing name (``dynamodb`` for both DynamoDB services, ``kinesis``
for Kinesis: botocore's service models say so, and ``tests/unit/test_endpoints.py`` holds them
to it). Kinesis requests name their stream by StreamName, never StreamARN: with an ARN
botocore's rules pick an account-scoped host, without one the regional host, which serves both.

Start-up cost, measured: when ``replicator.yaml`` names the endpoint (moto, DynamoDB Local,
the benchmarks) nothing more of botocore is imported. Otherwise the first resolution costs
about 40 ms of CPU, nearly all of it importing botocore's rules engine (``botocore.utils``
and the HTTP modules under it; a botocore session, which the credential chain loads when
the keys are not in the environment, imports them too); each later one under 1 ms. A
botocore client is not built: its session, model and handlers cost several times that.
Account-id endpoints (``AccountIdEndpointMode``) are not used: the regional endpoint
always serves, and the keys' account is not known before the first request.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from replicator.errors import ConfigError

if TYPE_CHECKING:
    from botocore.endpoint_provider import EndpointProvider
    from botocore.loaders import Loader

# Both DynamoDB services sign as DynamoDB (their models' ``signingName``); Kinesis as itself.
SIGNING_NAME = "dynamodb"
SERVICES = ("dynamodb", "dynamodbstreams", "kinesis")
# Each service's model version, as the clients' X-Amz-Target names it.
API_VERSIONS = {"dynamodb": "2012-08-10", "dynamodbstreams": "2012-08-10", "kinesis": "2013-12-02"}
_SIGNING_NAMES = {"dynamodb": SIGNING_NAME, "dynamodbstreams": SIGNING_NAME, "kinesis": "kinesis"}
_ENV_SUFFIX = {
    "dynamodb": "DYNAMODB",
    "dynamodbstreams": "DYNAMODB_STREAMS",
    "kinesis": "KINESIS",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The URL requests are POSTed to, and the region and service name they are signed for."""

    url: str
    signing_region: str
    signing_name: str = SIGNING_NAME


def resolve(service: str, region: str, configured: str | None = None) -> Endpoint:
    """The endpoint of ``service`` in ``region``; ``configured``: replicator.yaml's URL for it.

    Raises ``ConfigError`` when botocore's rules have no endpoint for the settings (FIPS or
    dual-stack asked of a partition without them).
    """
    if service not in SERVICES:
        raise ValueError(f"not a service replicator calls: {service!r}")
    if configured:
        return Endpoint(configured, region, _SIGNING_NAMES[service])
    profile = _profile()
    url = _configured_url(service, profile)
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            # No scheme or host (botocore refuses it too), or a query, which is not signed.
            # The value is not shown: it may hold credentials.
            raise ConfigError(
                f"the {service} endpoint URL set in the environment or the AWS config is "
                "not scheme://host[:port][/path] — fix AWS_ENDPOINT_URL, "
                f"AWS_ENDPOINT_URL_{_ENV_SUFFIX[service]} or the profile's endpoint_url"
            )
        return _ruled(service, region, Endpoint=url)
    return _ruled(
        service,
        region,
        UseFIPS=_setting("use_fips_endpoint", profile),
        UseDualStack=_setting("use_dualstack_endpoint", profile),
    )


def _ruled(service: str, region: str, **parameters: Any) -> Endpoint:
    from botocore.exceptions import EndpointResolutionError

    parameters.setdefault("UseFIPS", False)
    parameters.setdefault("UseDualStack", False)
    try:
        resolved = _rules(service).resolve_endpoint(Region=region, **parameters)
    except EndpointResolutionError as exc:
        raise ConfigError(
            f"no {service} endpoint in {region}: {exc.kwargs.get('msg', exc)} — unset "
            "AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT, or name the endpoint "
            "under endpoints: in replicator.yaml"
        ) from None
    # A scheme the rules name overrides the defaults (sigv4 is the only one DynamoDB uses).
    schemes = resolved.properties.get("authSchemes") or [{}]
    return Endpoint(
        resolved.url,
        schemes[0].get("signingRegion", region),
        schemes[0].get("signingName", _SIGNING_NAMES[service]),
    )


@functools.cache
def _rules(service: str) -> EndpointProvider:
    from botocore.endpoint_provider import EndpointProvider

    # By path: ``load_service_model`` first lists every service botocore knows (400 stats).
    rules = _loader().load_data(f"{service}/{API_VERSIONS[service]}/endpoint-rule-set-1")
    return EndpointProvider(rules, _loader().load_data("partitions"))


@functools.cache
def _loader() -> Loader:
    from botocore.loaders import create_loader

    # botocore's data, after any AWS_DATA_PATH directories, as a session searches them.
    loader: Loader = create_loader(os.environ.get("AWS_DATA_PATH"))
    return loader


class _Profile(NamedTuple):
    whole: dict[str, Any]  # the AWS config file, as botocore's configloader parses it
    section: dict[str, Any]  # the active profile's settings


def _profile() -> _Profile:
    """The AWS config file and the active profile, read as a botocore session reads them."""
    from botocore.configloader import load_config
    from botocore.exceptions import ConfigNotFound, ConfigParseError

    name = os.environ.get("AWS_DEFAULT_PROFILE") or os.environ.get("AWS_PROFILE") or "default"
    path = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    try:
        whole: dict[str, Any] = load_config(path)
    except ConfigNotFound:
        whole = {}
    except ConfigParseError as exc:
        raise ConfigError(f"{exc} — fix the AWS config file (AWS_CONFIG_FILE)") from None
    return _Profile(whole, whole.get("profiles", {}).get(name, {}))


def _setting(name: str, profile: _Profile) -> bool:
    """A boolean setting from its environment variable, else the profile: botocore's table."""
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES

    key, variable, default, convert = BOTOCORE_DEFAUT_SESSION_VARIABLES[name]
    value = os.environ[variable] if variable in os.environ else profile.section.get(key, default)
    return bool(convert(value)) if value is not None else False


def _configured_url(service: str, profile: _Profile) -> str | None:
    from botocore.configprovider import ConfiguredEndpointProvider
    from botocore.exceptions import InvalidConfigError

    if _setting("ignore_configured_endpoint_urls", profile):
        return None
    try:
        url: str | None = ConfiguredEndpointProvider(*profile, service).provide()
    except InvalidConfigError as exc:  # a profile naming a services section that is not there
        raise ConfigError(f"{exc} — fix the AWS config file (AWS_CONFIG_FILE)") from None
    return url
