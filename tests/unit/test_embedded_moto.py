"""The embedded backend writes as atomically as DynamoDB does (``replicator.demo.motoserver``).

moto serves every request on a thread of its own. Here its backend runs in this process
with the interpreter switching threads as often as it can, which moto's own server does
only now and then (3 duplicate sequence numbers in 2 550 concurrent writes, measured).
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Iterator

import pytest
from moto.dynamodb.exceptions import ConditionalCheckFailed
from moto.dynamodb.models import DynamoDBBackend

import replicator.demo.motoserver  # noqa: F401  (makes moto's writes atomic, as the server runs it)

pytestmark = pytest.mark.timeout(60)

WRITERS = 8
WRITES = 100


@pytest.fixture
def busy_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_concurrent_writes_get_unique_sequence_numbers_and_one_conditional_winner(
    busy_switching: None,
) -> None:
    backend = DynamoDBBackend("us-east-1", "123456789012")
    backend.create_table(
        "orders",
        schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        throughput=None,
        attr=[{"AttributeName": "pk", "AttributeType": "S"}],
        global_indexes=None,
        indexes=None,
        streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        billing_mode="PAY_PER_REQUEST",
        sse_specification=None,
        tags=[],
        deletion_protection_enabled=None,
        warm_throughput=None,
    )
    created: collections.Counter[int] = collections.Counter()

    def writer(number: int) -> None:
        for n in range(WRITES):
            backend.put_item("orders", {"pk": {"S": f"writer{number}-{n}"}})
            try:  # every writer races for the same key: one may create it
                backend.put_item(
                    "orders",
                    {"pk": {"S": f"contested-{n}"}},
                    condition_expression="attribute_not_exists(pk)",
                )
            except ConditionalCheckFailed:
                continue
            created[n] += 1

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = backend.get_table("orders").stream_shard.items  # type: ignore[union-attr]
    numbers = [record.record["dynamodb"]["SequenceNumber"] for record in records]
    assert len(numbers) == WRITERS * WRITES + WRITES
    assert len(set(numbers)) == len(numbers)  # plain moto: a dozen numbers given twice
    assert created == dict.fromkeys(range(WRITES), 1)  # plain moto: some keys created twice
