"""``replicator status``: the running service's figures, read from its ``/api/status``.

The same document the dashboard draws, printed as one table per pair plus the shards, so an
operator on a box without a browser sees the same lag, heartbeat and outcome figures.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from replicator.config.schema import WebConfig
from replicator.errors import ConfigError, ReplicatorError
from replicator.web.server import base_url

__all__ = ["fetch_status", "render_status", "status_url", "unreachable_hint"]

STATUS_PATH: Final = "/api/status"
TIMEOUT_SECONDS: Final = 5.0
MAX_BYTES: Final = 16 * 1024 * 1024  # ten minutes of history for many pairs fits easily
STALE_HEARTBEAT_SECONDS: Final = 10.0  # the dashboard turns the heartbeat age red past this
# No proxy: the service listens on loopback by default, where an HTTP(S)_PROXY from the
# environment would only get in the way.
_QUANTILES: Final = ("last", "p50", "p99")
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def status_url(web: WebConfig, url: str | None = None) -> str:
    """The status endpoint: ``url`` (base URL or full) if given, else from the web config."""
    if url is None:
        return base_url(web.host, web.port) + STATUS_PATH
    problem = ConfigError(f"--url: {url!r} is not an http:// URL — use e.g. http://127.0.0.1:9464")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 bracket)
        raise problem from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise problem
    if parts.path.rstrip("/").endswith(STATUS_PATH):
        return url
    return url.rstrip("/") + STATUS_PATH


def fetch_status(url: str, *, hint: str = "", timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """GET the status document; a service that does not answer is a one-line ReplicatorError."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ReplicatorError(f"{url} answered HTTP {exc.code} — is it a replicator?") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError):  # socket.timeout is an alias of it
            reason = f"no answer within {timeout:g} s"
        elif isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror.lower()  # "connection refused", without "[Errno 111]"
        raise ReplicatorError(f"no answer from {url} ({reason}){hint}") from None
    if len(body) > MAX_BYTES:
        raise ReplicatorError(f"{url} sent more than {MAX_BYTES} bytes — is it a replicator?")
    try:
        document = json.loads(body)
    except ValueError:
        raise ReplicatorError(f"{url} did not answer JSON — is it a replicator?") from None
    if not isinstance(document, dict) or not isinstance(document.get("pairs"), list):
        raise ReplicatorError(f"{url} did not answer a status document — is it a replicator?")
    return document


def unreachable_hint(web: WebConfig, config_name: str) -> str:
    """What to check when the service does not answer, for the error line."""
    if not web.enabled:
        return f" — web.enabled is false in {config_name}: set it to true and restart the service"
    return (
        f" — is `replicator run -c {config_name}` running? It serves on web.host {web.host}, "
        f"web.port {web.port} when web.enabled is true; or pass --url"
    )


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if value < 120 else f"{value / 60:.1f} min"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _pair_table(pair: Mapping[str, Any]) -> Table:
    lag = pair.get("lag_seconds") or {}
    heartbeat = pair.get("heartbeat") or {}
    age = heartbeat.get("age_seconds")
    stale = isinstance(age, int | float) and age > STALE_HEARTBEAT_SECONDS
    dead = pair.get("dead_lettered")
    rate = pair.get("throughput_per_second")
    title = f"{pair.get('source_table', '?')} -> {pair.get('target', '?')}"
    table = Table(title=title, title_justify="left", min_width=50)
    table.add_column("figure")
    table.add_column("value", justify="right")
    # The heartbeat is the precise lag and never reads 0 when the pipeline stalls.
    current = heartbeat.get("lag_seconds")
    source = "heartbeat" if current is not None else "last record"
    rows: list[tuple[str, str | Text]] = [
        (f"lag ({source})", _seconds(current if current is not None else lag.get("last"))),
        ("lag last / p50 / p99 (60 s)", " / ".join(_seconds(lag.get(k)) for k in _QUANTILES)),
        ("heartbeat lag", _seconds(current)),
        ("heartbeat age", Text(_seconds(age), style="bold red" if stale else "")),
        ("throughput", f"{rate:,.1f} /s" if isinstance(rate, int | float) else "-"),
        ("applied", _count(pair.get("applied"))),
        ("superseded", _count(pair.get("superseded"))),
        ("duplicate", _count(pair.get("duplicate"))),
        ("dead-lettered (DLQ)", Text(_count(dead), style="bold red" if dead else "")),
        ("in flight", _count(pair.get("in_flight"))),
        ("concurrency limit", _count(pair.get("concurrency_limit"))),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _shards_table(shards: list[Mapping[str, Any]]) -> Table:
    table = Table(title="shards", title_justify="left")
    for column in ("source table", "shard", "target", "checkpoint", "state"):
        table.add_column(column, overflow="fold")
    for shard in shards:
        state = "ended" if shard.get("ended") else "reading" if shard.get("reading") else "idle"
        table.add_row(
            str(shard.get("source_table", "?")),
            str(shard.get("shard_id", "?")),
            str(shard.get("target", "?")),
            str(shard.get("checkpoint") or "-"),
            state,
        )
    return table


def _lease_lines(service: Mapping[str, Any], leases: list[Mapping[str, Any]]) -> list[Text]:
    """This process's role, then who holds each table's lease (DESIGN §6)."""
    lines = [Text(f"role {service.get('role', '?')}: instance {service.get('instance') or '?'}")]
    for lease in leases:
        holder = lease.get("holder") or "nobody"
        lines.append(
            Text(
                f"  {lease.get('source_table', '?')}: {lease.get('role', '?')} "
                f"({lease.get('state', '?')}), lease held by {holder}",
                style="bold" if lease.get("role") == "active" else "",
            )
        )
    return lines


def render_status(status: Mapping[str, Any]) -> list[RenderableType]:
    """The header line, the role and leases, one table per pair, then the shards table."""
    service = status.get("service") or {}
    totals = status.get("totals") or {}
    now, started = service.get("now"), service.get("started_at")
    uptime = (
        f"{now - started:,.0f} s"
        if isinstance(now, float | int) and isinstance(started, float | int)
        else "-"
    )
    header = Text(
        f"replicator {service.get('version', '?')} in {service.get('source_region', '?')} "
        f"({service.get('mode', '?')}), up {uptime}: read {_count(totals.get('records_read'))}, "
        f"retries {_count(totals.get('retries'))}, trimmed {_count(totals.get('trimmed'))}, "
        f"version regressions {_count(totals.get('version_regressions'))}"
        + (
            f", conflicts {_count(totals.get('conflicts'))} (replicator conflicts list)"
            if service.get("mode") == "active-active"
            else ""
        )
    )
    parts: list[RenderableType] = [header, *_lease_lines(service, status.get("leases") or [])]
    pairs = status.get("pairs") or []
    parts += [_pair_table(pair) for pair in pairs] or [Text("no table pairs reported yet")]
    shards = status.get("shards") or []
    parts.append(_shards_table(shards) if shards else Text("no shards reported yet"))
    return parts
