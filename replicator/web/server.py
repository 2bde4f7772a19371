"""The read-only web server: dashboard, ``/metrics``, ``/api/status`` and health probes.

It binds loopback by default (exposing it is a config choice) and serves only what it
knows: a fixed set of routes and a fixed set of static files read from package data, so
there is no filesystem path to traverse. Every response carries a strict
Content-Security-Policy; the dashboard needs nothing but its own origin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, Final, Protocol
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from replicator.config.schema import WebConfig
from replicator.errors import ConfigError

__all__ = ["StatusSource", "base_url", "build_app", "serve"]

log = logging.getLogger(__name__)
http_log = logging.getLogger(f"{__name__}.http")  # aiohttp's per-connection errors

STATIC_FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS: Final = {
    # The dashboard is one origin: no CDN, no inline script or style, never framed.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Server": "replicator",  # instead of aiohttp's name and version, which help only a prober
}
# Limits of the HTTP parser: a request line or header above them is answered 400, never read
# into memory. A dashboard request is a few hundred bytes.
MAX_LINE_SIZE: Final = 4096
MAX_FIELD_SIZE: Final = 8190
MAX_HEADERS: Final = 64
KEEPALIVE_SECONDS: Final = 15.0  # the dashboard polls every second; idle sockets go soon
SHUTDOWN_SECONDS: Final = 2.0  # bounded stop even with a browser holding a keep-alive socket

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusSource(Protocol):
    """What the server reads; :class:`replicator.telemetry.metrics.Metrics` provides it."""

    def status(self) -> dict[str, Any]: ...

    def prometheus_text(self) -> bytes: ...

    def ready(self) -> tuple[bool, str]: ...


class _QuietBadRequests(logging.Filter):
    """A malformed request is the client's fault: one debug line, not an ERROR traceback.

    aiohttp logs every unparsable request with its traceback; a port scanner would otherwise
    fill the service log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            log.debug("bad request answered %d: %s", error.code, error.message)
            return False
        return True


http_log.addFilter(_QuietBadRequests())


def _static(name: str) -> bytes:
    return resources.files("replicator.web").joinpath("static", name).read_bytes()


def _finite(value: Any) -> Any:
    # JSON has no NaN or Infinity and the browser's JSON.parse rejects them: send null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json(data: Any, *, status: int = 200) -> web.Response:
    body = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return web.Response(
        text=body, status=status, content_type="application/json", headers=_NO_STORE
    )


_NO_STORE: Final = {"Cache-Control": "no-store"}  # live figures: never from a cache


def _has_dot_segment(raw_path: str) -> bool:
    try:
        path = unquote(raw_path.split("?", 1)[0], errors="strict")
    except UnicodeDecodeError:  # percent-encoding of bytes that are not UTF-8
        return True
    return any(part in (".", "..") for part in path.replace("\\", "/").split("/"))


@web.middleware
async def _reject_odd_paths(request: web.Request, handler: _Handler) -> web.StreamResponse:
    # The URL parser would resolve "/static/../metrics" to "/metrics"; a client sending dot
    # segments is probing, not browsing, so it gets 400 instead of whatever they resolve to.
    raw = request.raw_path
    if not raw.startswith("/") or _has_dot_segment(raw) or "\x00" in unquote(raw):
        raise web.HTTPBadRequest(text="bad request path")
    if request.version < (1, 0):  # "GET /" alone: HTTP/0.9, no headers; nothing of ours uses it
        raise web.HTTPBadRequest(text="HTTP/1.0 or later required")
    return await handler(request)


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # A signal, not a middleware, so 404 and 405 answers from the router get them too.
    response.headers.update(SECURITY_HEADERS)


def build_app(metrics: StatusSource) -> web.Application:
    """The aiohttp application; :func:`serve` runs it, tests may use it directly."""
    files = {name: _static(name) for name in STATIC_FILES}

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            body=files["index.html"], headers={"Content-Type": STATIC_FILES["index.html"]}
        )

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:  # an allow-list: nothing else is reachable
            raise web.HTTPNotFound(text="not found")
        return web.Response(body=files[name], headers={"Content-Type": STATIC_FILES[name]})

    async def prometheus(request: web.Request) -> web.Response:
        # Loaded with the exporter at the first scrape, not before the service's first write.
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(
            body=metrics.prometheus_text(),
            headers={"Content-Type": CONTENT_TYPE_LATEST, **_NO_STORE},
        )

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready, reason = metrics.ready()
        status = "ready" if ready else "not ready"
        return _json({"status": status, "reason": reason}, status=200 if ready else 503)

    async def api_status(request: web.Request) -> web.Response:
        return _json(metrics.status())

    app = web.Application(middlewares=[_reject_odd_paths], client_max_size=1024)
    app.on_response_prepare.append(_add_security_headers)
    # add_get also answers HEAD; any other method on these paths is 405 from the router.
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/status", api_status)
    return app


def base_url(host: str, port: int) -> str:
    """``http://host:port`` with an IPv6 address in brackets; a wildcard bind reads as loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serve(config: WebConfig, metrics: StatusSource) -> AsyncIterator[str]:
    """Serve until the block exits; yield the base URL actually bound (port 0: an ephemeral one).

    ``config.enabled`` is the caller's decision: this always serves.
    """
    runner = web.AppRunner(
        build_app(metrics),
        access_log=None,  # a dashboard polling every second would flood the service log
        shutdown_timeout=SHUTDOWN_SECONDS,
        handle_signals=False,  # the service owns SIGTERM
        logger=http_log,
        keepalive_timeout=KEEPALIVE_SECONDS,
        max_line_size=MAX_LINE_SIZE,
        max_field_size=MAX_FIELD_SIZE,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:  # in use, or a host this machine does not have
            raise ConfigError(
                f"web: cannot listen on {config.host}:{config.port} ({_reason(exc)}); "
                "choose another web.port or web.host, or set web.enabled: false"
            ) from exc
        host, port = runner.addresses[0][:2]
        url = base_url(str(host), int(port))
        log.debug("serving on %s/", url)  # the caller announces it where its user looks
        yield url
    finally:
        await runner.cleanup()


def _reason(exc: OSError) -> str:
    """'Address already in use', not asyncio's sentence that repeats the address."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
