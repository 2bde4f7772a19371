"""Where a command's config comes from: ``-c FILE``, else the process environment.

``REPLICATOR_CONFIG`` names the file (as it does for the Lambda handler);
``REPLICATOR_CONFIG_YAML`` holds the YAML itself, for containers whose orchestrator injects
the config as a variable (deploy/cloudformation/ecs.yaml, from SSM) and keeps nothing on disk.
Every error names where the config came from, the variable included.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from replicator.config.schema import Config, load_config, parse_config_text
from replicator.errors import ConfigError

CONFIG_ENV = "REPLICATOR_CONFIG"
CONFIG_YAML_ENV = "REPLICATOR_CONFIG_YAML"


def config_source(path: Path | None, environ: Mapping[str, str] = os.environ) -> str:
    """How errors and messages name the config: the path, or ``VARIABLE`` / ``VARIABLE=path``."""
    if path is not None:
        return str(path)
    named, text = environ.get(CONFIG_ENV), environ.get(CONFIG_YAML_ENV)
    if named and text is not None:
        raise ConfigError(
            f"both {CONFIG_ENV} and {CONFIG_YAML_ENV} are set — unset one: the file it names "
            "and the YAML it holds could differ"
        )
    if named:
        return f"{CONFIG_ENV}={named}"
    if text is not None:
        return CONFIG_YAML_ENV
    raise ConfigError(
        f"no config — pass -c replicator.yaml, or set {CONFIG_ENV} to its path or "
        f"{CONFIG_YAML_ENV} to its YAML"
    )


def load(path: Path | None, environ: Mapping[str, str] = os.environ) -> Config:
    """The config of ``-c path``, or of the environment when no path is given."""
    source = config_source(path, environ)
    if source == CONFIG_YAML_ENV:
        return parse_config_text(environ[CONFIG_YAML_ENV], source=source)
    return load_config(path or environ[CONFIG_ENV], source=source)
