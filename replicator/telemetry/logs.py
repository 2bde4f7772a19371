"""Log lines for people (text) or for log stores (JSON, one object a line).

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus every
field the code passed with ``extra=`` (``source_table``, ``key``, ``target``, ``reason``,
``shard``...), so CloudWatch Logs Insights, Loki or Datadog can filter on them.

botocore's DEBUG lines print request headers, the session token among them: its loggers stay
at INFO whatever ``--log-level`` asks, so no line carries a credential.
"""

from __future__ import annotations

import enum
import logging

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIETED = ("botocore", "aiobotocore", "urllib3")


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format is LogFormat.TEXT:
        return logging.Formatter(TEXT_FORMAT)
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_default=str,  # a TargetRef or a Decimal passed in extra= is written as text
    )


def configure_logs(level: str, log_format: LogFormat) -> None:
    """Every log line of this process to stderr, at ``level``, as ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIETED:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
