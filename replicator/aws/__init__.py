"""The AWS wire: endpoint resolution, HTTP pool, SigV4 signer, credentials, the JSON
client, error classification, the one retry policy, and table set-up through it.

Imports only ``replicator.errors`` and ``replicator.models``: everything else builds on it.
"""
