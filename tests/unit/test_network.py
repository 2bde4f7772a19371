"""Which proxy an endpoint is reached through, with botocore's own reading as the oracle."""

from __future__ import annotations

import pytest
from botocore.httpsession import ProxyConfiguration
from botocore.utils import get_environ_proxies
from yarl import URL

from replicator.aws.network import proxy_for
from replicator.errors import ConfigError

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def botocore_choice(endpoint: str) -> tuple[str, int, str] | None:
    """(host, port, Proxy-Authorization) botocore would use for ``endpoint``; None: direct."""
    settings = ProxyConfiguration(proxies=get_environ_proxies(endpoint))
    url = settings.proxy_url_for(endpoint)
    if not url:
        return None
    parsed = URL(url)
    assert parsed.host is not None
    authorization = settings.proxy_headers_for(url).get("Proxy-Authorization", "")
    return parsed.host, parsed.port or 80, authorization


@pytest.mark.parametrize(
    ("settings", "endpoint"),
    [
        ({}, "https://dynamodb.eu-west-1.amazonaws.com"),
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "https://dynamodb.eu-west-1.amazonaws.com"),
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "http://127.0.0.1:8000"),  # http: not it
        ({"HTTP_PROXY": "proxy.corp:3128"}, "http://127.0.0.1:8000"),  # no scheme: http://
        ({"http_proxy": "//proxy.corp"}, "http://127.0.0.1:8000"),
        ({"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:2"}, "http://10.0.0.1"),
        ({"HTTP_PROXY": "http://u%40corp:p%3Ass@proxy:3128"}, "http://127.0.0.1:8000"),
        ({"HTTP_PROXY": "http://onlyuser@proxy:3128"}, "http://127.0.0.1:8000"),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".amazonaws.com"},
            "https://dynamodb.eu-west-1.amazonaws.com",
        ),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "amazonaws.com.cn"},
            "https://dynamodb.eu-west-1.amazonaws.com",
        ),
        (
            {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1:8000"},
            "http://127.0.0.1:8000",
        ),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "localhost"}, "http://127.0.0.1:8000"),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, "http://127.0.0.1:8000"),
    ],
)
def test_the_proxy_is_the_one_botocore_picks(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], endpoint: str
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    proxy = proxy_for(URL(endpoint))
    ours = None if proxy is None else (proxy.host, proxy.port, proxy.authorization.strip())
    expected = botocore_choice(endpoint)
    if expected is not None and expected[2]:
        expected = (expected[0], expected[1], f"Proxy-Authorization: {expected[2]}")
    assert ours == expected


def test_a_proxy_spoken_to_over_tls_is_refused_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "https://ops:s3cret@proxy.corp:443")
    monkeypatch.delenv("https_proxy", raising=False)
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as refused:
        proxy_for(URL("https://dynamodb.eu-west-1.amazonaws.com"))
    assert "s3cret" not in str(refused.value)


def test_the_proxys_credentials_appear_in_no_repr_or_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://ops:s3cret@proxy.corp:3128")
    monkeypatch.delenv("http_proxy", raising=False)
    proxy = proxy_for(URL("http://127.0.0.1:8000"))
    assert proxy is not None and proxy.authorization
    shown = f"{proxy!r} {proxy} {proxy.refused()}"
    assert "s3cret" not in shown and proxy.authorization.split()[-1] not in shown
