"""Reading DynamoDB Streams or a Kinesis data stream (``kinesis``): shard lineage, the reader
per shard, loss detection, the source seam (and its scripted fake), checkpoint positions, and
stream records turned into changes (``records``; a Kinesis record's document is decoded by
``kinesis_records`` into the same filters).

Imports ``aws``, ``errors`` and ``models`` only.
"""
