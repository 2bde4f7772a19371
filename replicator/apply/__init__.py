"""Applying a change to a target: the conflict rule (a pure function), its condition
expression, the conditional writer, the adaptive concurrency limit and the applier, and
what a pair replicates (``selection``: filter, excluded attributes, TTL-delete policy).

Imports ``aws``, ``stream.records``, ``config.filters``, ``telemetry``, ``errors`` and
``models``.
"""
