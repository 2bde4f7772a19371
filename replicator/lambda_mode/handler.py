"""Lambda mode's entry point: ``handler(event, context)`` behind a DynamoDB Streams or
Kinesis event source mapping (and the heartbeat's schedule). What it does per batch is
``lambda_mode.function.LambdaFunction``'s.

Config: the YAML file named by ``REPLICATOR_CONFIG`` (packaged in the zip), or the YAML itself
in ``REPLICATOR_CONFIG_YAML``, as for every command (the ``replicator run`` schema). The
function built from it stays warm as long as the execution environment.
"""

from __future__ import annotations

import os
from typing import Any

from replicator.config import environment
from replicator.config.environment import CONFIG_ENV, CONFIG_YAML_ENV
from replicator.errors import ConfigError
from replicator.lambda_mode.function import DEFAULT_MARGIN_MS, Context, LambdaFunction

MARGIN_ENV = "REPLICATOR_DEADLINE_MARGIN_MS"

# The environment ``handler`` keeps warm, by where its config came from.
_warm: dict[tuple[str, str | None], LambdaFunction] = {}


def handler(event: dict[str, Any], context: Context) -> dict[str, Any]:
    """The Lambda entry point (``replicator.lambda_mode.handler.handler``)."""
    if not os.environ.get(CONFIG_ENV) and os.environ.get(CONFIG_YAML_ENV) is None:
        raise ConfigError(
            f"{CONFIG_ENV} is not set: set it to the path of the replicator.yaml "
            f"packaged with the function, or {CONFIG_YAML_ENV} to its YAML"
        )
    source = (environment.config_source(None), os.environ.get(CONFIG_YAML_ENV))
    function = _warm.get(source)
    if function is None:
        margin = os.environ.get(MARGIN_ENV, str(DEFAULT_MARGIN_MS))
        if not margin.isdigit():
            raise ConfigError(f"{MARGIN_ENV}={margin!r} is not whole milliseconds, e.g. 1000")
        config = environment.load(None)
        function = _warm[source] = LambdaFunction(config, margin_ms=int(margin))
    return function(event, context)


def close_warm() -> None:
    """Close what ``handler`` keeps warm (local runs and tests end with it)."""
    while _warm:
        _warm.popitem()[1].close()
