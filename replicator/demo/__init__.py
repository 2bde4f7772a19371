"""The demo's parts: the embedded backend (moto servers), load generators and ``replicator demo``.

The product never imports this package (a test holds it to that); the Lambda zip and the
container image leave it out. Tests, benchmarks and the chaos suite use it.
"""
