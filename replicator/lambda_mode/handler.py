"""Lambda mode's entry point: ``handler(event, context)`` behind a DynamoDB Streams event
source mapping (and the heartbeat's schedule). What it does per batch is
``lambda_mode.function.LambdaFunction``'s.

Config: the YAML file named by ``REPLICATOR_CONFIG`` (the ``replicator run`` schema). The
function built from it stays warm as long as the execution environment.
"""

from __future__ import annotations

import os
from typing import Any

from replicator.config.schema import load_config
from replicator.errors import ConfigError
from replicator.lambda_mode.function import DEFAULT_MARGIN_MS, Context, LambdaFunction

CONFIG_ENV = "REPLICATOR_CONFIG"
MARGIN_ENV = "REPLICATOR_DEADLINE_MARGIN_MS"

# The environment ``handler`` keeps warm, by config path.
_warm: dict[str, LambdaFunction] = {}


def handler(event: dict[str, Any], context: Context) -> dict[str, Any]:
    """The Lambda entry point (``replicator.lambda_mode.handler.handler``)."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            f"{CONFIG_ENV} is not set: set it to the path of the replicator.yaml "
            "packaged with the function"
        )
    function = _warm.get(path)
    if function is None:
        margin = os.environ.get(MARGIN_ENV, str(DEFAULT_MARGIN_MS))
        if not margin.isdigit():
            raise ConfigError(f"{MARGIN_ENV}={margin!r} is not whole milliseconds, e.g. 1000")
        function = _warm[path] = LambdaFunction(load_config(path), margin_ms=int(margin))
    return function(event, context)


def close_warm() -> None:
    """Close what ``handler`` keeps warm (local runs and tests end with it)."""
    while _warm:
        _warm.popitem()[1].close()
