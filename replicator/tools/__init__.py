"""The operator's commands beside ``run``: backfill, verify, repair, replay, dlq, status.

Imports every product layer below ``cli``; the CLI calls them.
"""
