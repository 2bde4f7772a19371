"""Reading DynamoDB Streams: shard lineage, the reader per shard, loss detection, the
source seam (and its scripted fake), and stream records turned into changes (``records``).

Imports ``aws``, ``errors`` and ``models`` only.
"""
