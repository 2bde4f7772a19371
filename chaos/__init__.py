"""Fault injection and the protocol model that checks the replication rules converge."""
