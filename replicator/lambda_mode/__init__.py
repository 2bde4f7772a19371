"""Lambda mode: the handler an event source mapping (DynamoDB Streams or Kinesis) invokes,
the event reader, the sources a batch feeds, one invocation's batch and its CloudWatch
embedded-metric-format lines.

Shares decode, coalesce and the applier with container mode (``pipeline``, ``apply``,
``service``'s wiring); nothing imports it but the Lambda runtime and tests.
"""
