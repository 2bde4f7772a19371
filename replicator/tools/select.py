"""Choosing which configured pairs an operator tool works on."""

from __future__ import annotations

from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError


def select_pairs(config: Config, source_table: str | None) -> list[Pair]:
    """Every pair, or the one whose source table is ``source_table``."""
    if source_table is None:
        return list(config.pairs)
    chosen = [pair for pair in config.pairs if pair.source_table == source_table]
    if not chosen:
        known = ", ".join(pair.source_table for pair in config.pairs)
        raise ConfigError(
            f"--pair {source_table}: no pair has that source table — use one of: {known}"
        )
    return chosen
