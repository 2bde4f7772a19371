"""The garbage collector's settings for a long-running ``replicator run``.

A module of its own so the command can apply them before it imports the service.
"""

from __future__ import annotations

# The young generation is collected every 50 000 net allocations instead of 700. At
# thousands of writes a second the defaults ran the full collector every few seconds over
# every record in the lanes' queues: 130 µs of CPU per write, 40 % of it (bench 8).
# Reference counting still frees the pipeline's garbage at once; only cycles wait longer.
# Set before the service's imports, they also spare start-up about 40 ms of CPU, a tenth
# of it, spent collecting while modules load (bench 10).
GC_THRESHOLDS = (50_000, 20, 20)
