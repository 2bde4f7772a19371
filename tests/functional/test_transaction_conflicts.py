"""An application's transactions on the target do not stop replication (issue 19).

In active-active mode an application's TransactWriteItems can hold an item that a
replicated write targets; DynamoDB then refuses the PutItem with a 400
TransactionConflictException. The service waits it out like a throttle and converges.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from chaos.proxy import FaultKind, FaultProxy, Faults, HttpFault
from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from replicator.service.run import metrics_for, run_service
from replicator.tools.verify import Report
from tests.e2e.helpers import SOURCE, TARGET, converged, create_tables, write_config

PUT_ITEM = "DynamoDB_20120810.PutItem"
ITEMS = 20


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.mark.timeout(90)
async def test_target_writes_refused_for_a_transaction_in_progress_are_retried_until_they_land(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    direct = write_config(tmp_path / "direct.yaml", endpoints, unique_name)
    await create_tables(load_config(direct))
    faults = Faults(http=[HttpFault(FaultKind.TRANSACTION_CONFLICT, 0.4, only=PUT_ITEM)])
    async with FaultProxy(_address(endpoints[TARGET]), faults=faults, http=True) as proxy:
        proxied = {**endpoints, TARGET: proxy.url}
        config = load_config(write_config(tmp_path / "proxied.yaml", proxied, unique_name))
        stop, metrics = asyncio.Event(), metrics_for(config)
        service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics))
        clients = Clients(endpoints)
        converging: asyncio.Task[Report] | None = None
        try:
            source = await clients.json("dynamodb", SOURCE)
            for n in range(ITEMS):
                item = {"pk": {"S": f"k{n}"}, "version": {"N": "1"}, "v": {"S": "x"}}
                await source.put_item(TableName=unique_name, Item=item)
            converging = asyncio.create_task(converged(direct, within=60))
            # A service stopped by a conflict fails the test at once, not after 60 s.
            await asyncio.wait({service, converging}, return_when=asyncio.FIRST_COMPLETED)
            assert not service.done(), _outcome(service)
            report = await converging
        finally:
            if converging is not None:
                converging.cancel()
            stop.set()
            async with asyncio.timeout(30):
                await service
            await clients.aclose()
            metrics.shutdown()
    assert report.compared == ITEMS
    assert proxy.stats.injected[FaultKind.TRANSACTION_CONFLICT.value] >= 1
    assert metrics.total("retries") >= proxy.stats.injected[FaultKind.TRANSACTION_CONFLICT.value]
    assert metrics.total("dead_lettered") == 0


def _outcome(task: asyncio.Task[Any]) -> str:
    return repr(task.exception()) if task.done() else "running"
