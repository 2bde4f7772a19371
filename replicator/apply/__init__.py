"""Applying a change to a target: the conflict rule (a pure function; ``rulek`` is a
Kinesis pair's one-way rule, whose ties ``ties`` settles from the source item), its
condition expression, the conditional writer, the adaptive concurrency limit and the applier, and
what a pair replicates (``selection``: filter, excluded attributes, TTL-delete policy).

Imports ``aws``, ``stream.records``, ``config.filters``, ``telemetry``, ``errors`` and
``models``.
"""
