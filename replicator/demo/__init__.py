"""The demo's parts: the embedded backend (moto servers), load generators and ``replicator demo``.

Also the Kinesis bridge (``kinesis_bridge``): it puts a table's changes into a Kinesis data
stream as DynamoDB's streaming destination would, which moto does not implement;
``kinesis_lab`` runs it beside a replicator (``demo --source kinesis``, chaos, tests).

The product never imports this package (a test holds it to that); the Lambda zip and the
container image leave it out. Tests, benchmarks and the chaos suite use it.
"""
