"""The AWS wire: endpoint resolution, HTTP pool, the proxy and CAs it uses (the SDK's
settings), SigV4 signer, credentials, the JSON client, error classification, the one retry
policy, and table set-up through it.

Imports only ``replicator.errors`` and ``replicator.models``: everything else builds on it.
"""
