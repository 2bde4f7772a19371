"""``replicator.yaml``: the frozen pydantic model and its one-line error messages.

Imports ``errors``, ``models`` and a constant of ``aws.http_pool``; nothing that runs.
"""
