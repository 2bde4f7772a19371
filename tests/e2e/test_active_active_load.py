"""Three regions, three replicators, concurrent random writers on overlapping keys."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from boto3.dynamodb.types import TypeDeserializer

from replicator.apply.rule import visible
from replicator.demo.activeload import ActiveActiveLoad, Write, winners
from replicator.models import Meta
from tests.e2e.helpers import wait_until
from tests.mesh import REGIONS, Mesh, running_mesh

# 30 s of load in make test, to keep it under ten minutes (it was 60 s until the Kinesis tests
# joined); REPLICATOR_AA_SECONDS sets a longer soak.
LOAD_SECONDS = float(os.environ.get("REPLICATOR_AA_SECONDS", "30"))
_deserialize = TypeDeserializer().deserialize
pytestmark = pytest.mark.slow


async def visible_state(mesh: Mesh, region: str) -> dict[str, dict[str, object] | None]:
    state: dict[str, dict[str, object] | None] = {}
    kwargs: dict[str, object] = {"TableName": mesh.table, "ConsistentRead": True}
    db = await mesh.db(region)
    while True:
        page = await db.scan(**kwargs)
        for item in page["Items"]:
            state[item["pk"]["S"]] = visible(item, Meta(version="version"))
        if "LastEvaluatedKey" not in page:
            return state
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def expected_state(writes: list[Write]) -> dict[str, dict[str, object] | None]:
    return {key: w.data for key, w in winners(writes).items()}


def present(state: dict[str, dict[str, object] | None]) -> dict[str, dict[str, object]]:
    return {k: v for k, v in state.items() if v is not None}


async def describe_divergence(mesh: Mesh, expected: dict[str, dict[str, object]]) -> str:
    lines = []
    for region in REGIONS:
        state = present(await visible_state(mesh, region))
        for key in sorted(state.keys() | expected.keys()):
            if state.get(key) != expected.get(key):
                lines.append(f"{region} {key}: has {state.get(key)}, winner {expected.get(key)}")
    return "regions did not converge to the LWW winner:\n" + "\n".join(lines[:20])


@pytest.mark.timeout(LOAD_SECONDS + 360)
async def test_concurrent_writers_in_three_regions_converge_to_the_lww_winner(
    endpoints: dict[str, str], unique_name: str
) -> None:
    async with running_mesh(endpoints, unique_name) as mesh:
        loads = [
            ActiveActiveLoad(await mesh.db(r), unique_name, keys=40, seed=i, region=r)
            for i, r in enumerate(REGIONS)
        ]
        deadline = time.monotonic() + LOAD_SECONDS
        await asyncio.gather(
            *(load.run(operations=100_000, deadline=deadline, concurrency=2) for load in loads)
        )
        writes = [w for load in loads for w in load.log]
        expected = present(expected_state(writes))
        assert len(writes) > 5 * LOAD_SECONDS, "the writers barely wrote: it proves nothing"
        assert any(w.tombstone for w in writes)

        async def all_regions_hold_the_winner() -> bool:
            states = [present(await visible_state(mesh, r)) for r in REGIONS]
            return all(state == expected for state in states)

        try:
            await wait_until(
                all_regions_hold_the_winner, within=240, what="every region to hold the winner"
            )
        except AssertionError as timed_out:
            raise AssertionError(await describe_divergence(mesh, expected)) from timed_out
        await mesh.assert_converged()
        for region, load in zip(REGIONS, loads, strict=True):
            local_writes = sum(1 for w in load.log)
            figures = mesh.metrics[region].status()["totals"]
            settled = figures["applied"] + figures["superseded"] + figures["duplicate"]
            # Each replicator only ever sends its own region's writes (two targets each,
            # plus its local tombstones): an echo re-sent would exceed this bound.
            assert settled <= 3 * local_writes, (region, figures, local_writes)
            assert figures["skipped"].get("echo", 0) > 0
            assert figures["version_regressions"] == 0
