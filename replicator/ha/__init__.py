"""High availability: the lease per source table (a pure state machine, its store and its
keeper) and the fence that stops writes once the lease may have passed on.

Imports ``aws``, ``apply``, ``pipeline``, ``errors`` and ``models``; ``telemetry`` reads only the
lease's value types (``ha.lease`` imports nothing).
"""
