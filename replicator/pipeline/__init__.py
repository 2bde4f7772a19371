"""Container mode's path from a stream batch to a checkpoint: decoded batches, per-key
lanes (``pair``), ordered commits, checkpoints and dead letters.

Imports ``aws``, ``apply``, ``stream``, ``telemetry``, ``errors`` and ``models``; never ``ha``,
``service`` or anything above them.
"""
