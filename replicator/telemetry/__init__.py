"""What replicator reports: OpenTelemetry metrics, the status document, lag, the heartbeat.

Imports ``aws``, ``errors``, ``models`` and the lease's value types (``ha.lease``).
"""
