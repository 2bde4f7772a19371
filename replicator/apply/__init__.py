"""Applying a change to a target: the conflict rule (a pure function), its condition
expression, the conditional writer, the adaptive concurrency limit and the applier.

Imports ``aws``, ``stream.records``, ``telemetry``, ``errors`` and ``models``.
"""
