"""Benchmark 12: what active-active's conflict feed costs the client per replicated write.

Active-active asks every replicated PutItem for the item it replaced
(``ReturnValues=ALL_OLD``) and writes ``_rep_kv``, so the conflict rule (DESIGN §4b) can
judge it at no extra read. One-way asks for nothing. Both paths run
``ConditionalWriter.put`` over the client ``replicator run`` builds, on the same changes,
against ``bench.stub`` (another process, answering at once; a PutItem with ReturnValues
gets its own item back, so decoding the old image is paid), taking turns in rounds as
benchmark 6 does. The figure is client CPU (``time.process_time``) per write.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from decimal import Decimal

from bench.backlog import RAW_CONCURRENCY
from bench.env import announced, credentials
from bench.fakes import META, TARGET
from bench.results import Result
from bench.sdk import REGION, SOURCE_REGION, TTL_SECONDS, WARMUP_WRITES, changes, concurrently
from bench.sdk import interleaved as take_turns
from replicator.apply.conflict import Loss
from replicator.apply.writer import ConditionalWriter
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.models import Change, Mode

NAME = "12 active-active write cost"
ROUNDS = 5


async def _no_feed(loss: Loss, change: Change) -> None:
    """A loss is rare and its entry is a write of its own: not part of the per-write cost."""


def _writer(client: DynamoDB, mode: Mode) -> ConditionalWriter:
    return ConditionalWriter(
        client,
        TARGET.table,
        region=REGION,
        meta=META,
        mode=mode,
        tombstone_ttl_seconds=TTL_SECONDS,
        on_conflict=_no_feed if mode is Mode.ACTIVE_ACTIVE else None,
    )


def active_active(work: list[Change]) -> list[Change]:
    """The same changes as read in active-active mode: each carries its kv (DESIGN §4b)."""
    return [
        dataclasses.replace(c, kv={SOURCE_REGION: Decimal(2) * c.incoming.version}) for c in work
    ]


async def active_active_cost(
    writes: int = 3000, *, concurrency: int = RAW_CONCURRENCY
) -> list[Result]:
    with credentials(), announced([sys.executable, "-m", "bench.stub"], name="stub") as port:
        clients = Clients({REGION: f"http://127.0.0.1:{port}"})
        try:
            client = await clients.put_client(REGION)
            one_way, both = _writer(client, Mode.ONE_WAY), _writer(client, Mode.ACTIVE_ACTIVE)
            plain = changes(writes + WARMUP_WRITES)
            with_kv = {id(c): k for c, k in zip(plain, active_active(plain), strict=True)}
            paths = {
                "one-way": concurrently(
                    lambda c: one_way.put(c, now=time.time()), concurrency=concurrency
                ),
                "active-active": concurrently(
                    lambda c: both.put(with_kv[id(c)], now=time.time()), concurrency=concurrency
                ),
            }
            warm, work = plain[:WARMUP_WRITES], plain[WARMUP_WRITES:]
            for path in paths.values():
                await path(warm)
            figures = await take_turns(paths, work, ROUNDS)
        finally:
            await clients.aclose()
    extra = figures["active-active"] - figures["one-way"]
    context = f"{writes:,} writes, concurrency {concurrency}, median of {ROUNDS} interleaved rounds"
    return [
        Result(
            NAME, "one-way ConditionalWriter.put", figures["one-way"], "µs", None,
            f"client CPU per conditional PutItem; {context}",
        ),
        Result(
            NAME, "active-active, ALL_OLD on success", figures["active-active"], "µs", None,
            f"_rep_kv written, the replaced item returned and judged: {extra:+.0f} µs "
            f"({figures['active-active'] / figures['one-way'] - 1:+.0%}) per write",
            {"figures_us": figures},
        ),
    ]  # fmt: skip
