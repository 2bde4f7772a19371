"""The web server over real sockets, fed by a fake status source; and ``replicator status``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST

from replicator.config.schema import WebConfig
from replicator.errors import ReplicatorError
from replicator.tools.status import fetch_status, render_status, status_url
from replicator.web.server import StatusSource, serve

PAIR = "orders -> eu-west-1/orders"
PROMETHEUS_TEXT = (
    b"# HELP replicator_heartbeat_age_seconds x\n# TYPE replicator_heartbeat_age_seconds gauge\n"
    b'replicator_heartbeat_age_seconds{source_table="orders"} 0.4\n'
)
ROUTES = ("/", "/static/index.html", "/static/dashboard.js", "/static/dashboard.css")
API = ("/metrics", "/healthz", "/readyz", "/api/status")


def contract_status(*, samples: int = 3, now: float = 1_700_000_100.0) -> dict[str, Any]:
    """A status document shaped exactly as docs/telemetry-contract.md describes it."""
    history = [
        {
            "t": now - samples + i,
            "pairs": {
                PAIR: {"p50": 0.1 + i / 100, "p99": 0.4, "heartbeat_lag": 0.05, "throughput": 12.0}
            },
        }
        for i in range(samples)
    ]
    return {
        "service": {"source_region": "us-east-1", "mode": "one-way", "role": "active",
                    "instance": "host:4242:a1b2c3", "started_at": now - 100, "now": now,
                    "version": "0.1.0"},
        "totals": {"records_read": 1200, "applied": 900, "superseded": 200, "duplicate": 90,
                   "dead_lettered": 1, "retries": 3, "trimmed": 0, "version_regressions": 0,
                   "skipped": {"echo": 10}},
        "pairs": [
            {"source_table": "orders", "target": "eu-west-1/orders", "target_region": "eu-west-1",
             "target_table": "orders", "applied": 900, "superseded": 200, "duplicate": 90,
             "dead_lettered": 1, "in_flight": 4, "concurrency_limit": 96,
             "throughput_per_second": 12.0,
             "lag_seconds": {"last": 0.2, "p50": 0.12, "p99": 0.4},
             "heartbeat": {"lag_seconds": 0.05, "age_seconds": 12.5}}
        ],
        "shards": [
            {"source_table": "orders", "shard_id": "shardId-00000001", "target": "eu-west-1/orders",
             "checkpoint": "0" * 37 + "123", "ended": False, "reading": True}
        ],
        "leases": [
            {"source_table": "orders", "role": "active", "state": "holding",
             "holder": "host:4242:a1b2c3"}
        ],
        "history": history,
    }  # fmt: skip


class FakeStatus:
    """A StatusSource with canned figures; ``readiness`` is set by the test."""

    def __init__(self) -> None:
        self.document = contract_status()
        self.readiness = (True, "every pair has a fresh heartbeat")

    def status(self) -> dict[str, Any]:
        return self.document

    def prometheus_text(self) -> bytes:
        return PROMETHEUS_TEXT

    def ready(self) -> tuple[bool, str]:
        return self.readiness


@pytest.fixture
def fake() -> FakeStatus:
    return FakeStatus()


async def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, dict(response.headers), await response.read()


async def raw(url: str, request: bytes) -> bytes:
    """Send bytes as they are; return the status line the server answers with."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        # The server may answer and close before reading it all; the answer is still buffered.
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


def test_fake_satisfies_the_protocol() -> None:
    source: StatusSource = FakeStatus()  # mypy checks the structure; this keeps it honest
    assert source.ready()[0]


@pytest.mark.timeout(10)
async def test_serve_binds_an_ephemeral_loopback_port_and_stops(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port not in (None, 0)
        assert (await get(f"{url}/healthz"))[0] == 200
    with pytest.raises(OSError):
        await asyncio.open_connection(parts.hostname, parts.port)


@pytest.mark.timeout(10)
async def test_dashboard_and_its_static_files(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        status, headers, body = await get(f"{url}/")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert b'src="/static/dashboard.js"' in body
        assert b'href="/static/dashboard.css"' in body
        for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            status, headers, body = await get(f"{url}/static/{name}")
            assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
            assert body


@pytest.mark.timeout(10)
async def test_every_answer_carries_the_security_headers(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        for path in (*ROUTES, *API, "/nowhere"):
            _, headers, _ = await get(f"{url}{path}")
            assert "default-src 'self'" in headers["Content-Security-Policy"], path
            assert headers["X-Content-Type-Options"] == "nosniff", path


@pytest.mark.timeout(10)
async def test_metrics_is_prometheus_text(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        status, headers, body = await get(f"{url}/metrics")
    assert (status, headers["Content-Type"], body) == (200, CONTENT_TYPE_LATEST, PROMETHEUS_TEXT)


@pytest.mark.timeout(10)
async def test_healthz_is_ok(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        status, headers, body = await get(f"{url}/healthz")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "application/json")
    assert json.loads(body) == {"status": "ok"}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("ready", "reason", "code"),
    [
        (True, "every pair has a fresh heartbeat", 200),
        (False, "heartbeat of orders is 75 s old", 503),
    ],
)
async def test_readyz_answers_the_reason(
    fake: FakeStatus, ready: bool, reason: str, code: int
) -> None:
    fake.readiness = (ready, reason)
    async with serve(WebConfig(port=0), fake) as url:
        status, _, body = await get(f"{url}/readyz")
    assert status == code
    assert json.loads(body)["reason"] == reason


@pytest.mark.timeout(10)
async def test_api_status_is_the_document_and_ignores_the_query(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        status, headers, body = await get(f"{url}/api/status?pair=x&%zz=1")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "application/json")
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(body) == fake.document


@pytest.mark.timeout(10)
async def test_non_finite_numbers_are_sent_as_null(fake: FakeStatus) -> None:
    fake.document["pairs"][0]["lag_seconds"]["p99"] = float("nan")
    fake.document["pairs"][0]["heartbeat"]["age_seconds"] = float("inf")
    async with serve(WebConfig(port=0), fake) as url:
        _, _, body = await get(f"{url}/api/status")
    pair = json.loads(body)["pairs"][0]  # strict JSON: NaN would not parse in the browser
    assert (pair["lag_seconds"]["p99"], pair["heartbeat"]["age_seconds"]) == (None, None)


@pytest.mark.timeout(10)
async def test_head_is_allowed_wherever_get_is(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        for path in (*ROUTES, *API):
            status, _, body = await get(f"{url}{path}", "HEAD")
            assert (status, body) == (200, b""), path


@pytest.mark.timeout(10)
async def test_the_server_is_read_only(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        for path in (*ROUTES, *API):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                assert (await get(f"{url}{path}", method))[0] == 405, (method, path)


@pytest.mark.timeout(10)
async def test_unknown_paths_are_404(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        for path in ("/nowhere", "/static/", "/static/server.py", "/static/__init__.py",
                     "/api", "/api/status/x", "/index.html", "//healthz"):  # fmt: skip
            assert (await get(f"{url}{path}"))[0] == 404, path


def request(line: bytes, *headers: bytes) -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in (b"Host: x", *headers)) + b"\r\n"


MALFORMED = {
    "dot segments": request(b"GET /static/../metrics HTTP/1.1"),
    "encoded dot segments": request(b"GET /static/%2e%2e/%2e%2e/server.py HTTP/1.1"),
    "encoded slash traversal": request(b"GET /static/..%2f..%2fserver.py HTTP/1.1"),
    "backslash traversal": request(b"GET /static/..\\server.py HTTP/1.1"),
    "bad percent-encoding": request(b"GET /static/%zz HTTP/1.1"),
    "percent-encoded non-UTF-8": request(b"GET /%ff%fe HTTP/1.1"),
    "encoded NUL": request(b"GET /static/index.html%00.js HTTP/1.1"),
    "unknown method": request(b"BREW /api/status HTTP/1.1"),
    "method with a bad character": request(b"G(T / HTTP/1.1"),
    "write method": request(b"DELETE /api/status HTTP/1.1"),
    "garbage request line": b"\x00\xff garbage\r\n\r\n",
    "TLS handshake on the plain port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40),
    "no HTTP version (0.9)": request(b"GET /"),
    "unknown HTTP version": request(b"GET / HTTP/9.9"),
    "absolute URL to another host": request(b"GET http://elsewhere.example/ HTTP/1.1"),
    "asterisk target": request(b"GET * HTTP/1.1"),
    "very long URL": request(b"GET /" + b"a" * 20_000 + b" HTTP/1.1"),
    "huge header": request(b"GET / HTTP/1.1", b"X-Big: " + b"a" * 20_000),
    "too many headers": request(b"GET / HTTP/1.1", *(b"X-%d: a" % i for i in range(500))),
    "negative content length": request(b"GET / HTTP/1.1", b"Content-Length: -1"),
    "length and chunked together": request(
        b"POST / HTTP/1.1", b"Transfer-Encoding: chunked", b"Content-Length: 3"
    ),
    "large body": request(b"POST /api/status HTTP/1.1", b"Content-Length: 100000000"),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", MALFORMED)
async def test_a_malformed_request_gets_4xx_and_the_server_carries_on(
    fake: FakeStatus, name: str
) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        for _ in range(3):  # repeated: nothing accumulates into a broken state
            line = await raw(url, MALFORMED[name])
            assert line.startswith(b"HTTP/"), line
            assert 400 <= int(line.split()[1]) < 500, line
        assert (await get(f"{url}/healthz"))[0] == 200
        assert (await raw(url, request(b"GET /healthz HTTP/1.1"))).split()[1] == b"200"


@pytest.mark.timeout(10)
async def test_status_tool_reads_the_service(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        document = await asyncio.to_thread(fetch_status, status_url(WebConfig(), url))
    assert document == fake.document
    parts = render_status(document)
    # header, role, one line per lease, one table per pair, shards
    assert len(parts) == 5
    assert str(parts[1]) == "role active: instance host:4242:a1b2c3"
    assert str(parts[2]) == "  orders: active (holding), lease held by host:4242:a1b2c3"


@pytest.mark.timeout(10)
async def test_status_tool_names_the_url_it_could_not_reach(fake: FakeStatus) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        pass  # now closed: nothing listens on that port any more
    with pytest.raises(ReplicatorError, match=rf"no answer from {url}/api/status"):
        await asyncio.to_thread(fetch_status, f"{url}/api/status", timeout=2)


def write_config(path: Path, port: int, *, enabled: bool = True) -> Path:
    pairs = [{"source_table": "orders", "targets": [{"region": "eu-west-1", "table": "orders"}]}]
    web = {"enabled": enabled, "port": port}
    path.write_text(yaml.safe_dump({"source_region": "us-east-1", "pairs": pairs, "web": web}))
    return path


async def status_command(*args: str) -> tuple[int, str]:
    # A subprocess run without blocking the loop, which keeps serving the fake meanwhile.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replicator", "status", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), output.decode()


@pytest.mark.timeout(90)
async def test_status_command_prints_each_pair_and_the_shards(
    fake: FakeStatus, tmp_path: Path
) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        config = write_config(tmp_path / "replicator.yaml", urlsplit(url).port or 0)
        code, output = await status_command("-c", str(config))
    assert code == 0, output
    shown = (
        "orders -> eu-west-1/orders",
        "lag (heartbeat)",
        "50 ms",
        "120 ms / 400 ms",
        "12.50 s",
        "12.0 /s",
        "dead-lettered (DLQ)",
        "concurrency limit",
        "96",
        "shardId-00000001",
        "reading",
    )
    for text in shown:
        assert text in output, (text, output)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("enabled", [True, False])
async def test_status_command_says_when_the_service_does_not_answer(
    fake: FakeStatus, tmp_path: Path, enabled: bool
) -> None:
    async with serve(WebConfig(port=0), fake) as url:
        port = urlsplit(url).port or 0
    config = write_config(tmp_path / "replicator.yaml", port, enabled=enabled)
    code, output = await status_command("-c", str(config))
    assert code == 1, output
    assert f"no answer from http://127.0.0.1:{port}/api/status (connection refused)" in output
    assert ("web.enabled is false" in output) is not enabled
    assert ("web.port" in output) is enabled
