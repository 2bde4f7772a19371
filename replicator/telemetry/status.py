"""What the service says about itself: the status document and readiness.

``/api/status`` (read by the dashboard and ``replicator status``) is built from the
figures with the dashboard's history sampled into it once a second; ``/readyz`` is
the first reason, if any, that the service is not doing its job.
"""

from __future__ import annotations

import collections
from importlib.metadata import version
from typing import Any

from replicator.models import Outcome
from replicator.telemetry.figures import OUTCOMES_IN_ORDER, TOTALS, Figures
from replicator.telemetry.state import quantile

# A call that has failed for this long without a success turns /readyz false: single
# faults (a throttle, one 500) come and go under load and are not worth a flapping probe.
FAILING_NOT_READY_SECONDS = 5.0


def sample_history(figures: Figures) -> None:
    """Append one point per pair to the dashboard history (call once a second)."""
    now = figures.clock()
    point: dict[str, Any] = {"t": now, "pairs": {}}
    with figures.lock:
        point["conflicts"] = figures.summed("conflicts")
        history = figures.history
        for (source_table, target), state in figures.pairs.items():
            settled = sum(state.outcomes.values())
            elapsed = now - history[-1]["t"] if history else 0.0
            if elapsed > 0:
                state.throughput = (settled - state.settled_at_last_sample) / elapsed
            state.settled_at_last_sample = settled
            recent = state.recent_lags(now)
            point["pairs"][f"{source_table} -> {target}"] = {
                "p50": quantile(recent, 0.5),
                "p99": quantile(recent, 0.99),
                "heartbeat_lag": state.heartbeat_lag,
                "throughput": round(state.throughput, 3),
            }
        history.append(point)


def readiness(
    figures: Figures, *, heartbeat_max_age: float | None, lease_max_age: float
) -> tuple[bool, str]:
    """``(ready, reason)``: the first of no reader, a failing call, a stale heartbeat or lease."""
    now = figures.clock()
    with figures.lock:
        waiting = sum(figures.without_reader.values())
        if waiting:
            return False, f"{waiting} shard(s) have no reader"
        for (call, region), (since, error) in sorted(figures.failing.items()):
            if now - since >= FAILING_NOT_READY_SECONDS:
                return False, (
                    f"{call} in {region} failing for {now - since:.1f} s, retrying: {error}"
                )
        if heartbeat_max_age is not None:
            for (source_table, target), state in figures.pairs.items():
                if figures.leases.active(source_table) is False:
                    continue  # a standby applies nothing: its canary age means nothing
                age = figures.heartbeat_age(state, now)
                if age > heartbeat_max_age:
                    return False, (
                        f"heartbeat {source_table} -> {target} is {age:.1f} s old "
                        f"(limit {heartbeat_max_age:.0f} s)"
                    )
    if stale := figures.leases.stale(lease_max_age):
        return False, stale
    return True, "ok"


def status_document(figures: Figures, service: dict[str, str]) -> dict[str, Any]:
    """The ``/api/status`` document (schema in docs/telemetry-contract.md)."""
    now = figures.clock()
    with figures.lock:
        pairs = []
        for (source_table, target), state in figures.pairs.items():
            recent = state.recent_lags(now)
            pairs.append(
                {
                    "source_table": source_table,
                    "target": str(target),
                    "target_region": target.region,
                    "target_table": target.table,
                    **{o.value: state.outcomes[o.value] for o in Outcome},
                    "in_flight": state.in_flight(),
                    "concurrency_limit": state.concurrency_limit(),
                    "throughput_per_second": round(state.throughput, 3),
                    "lag_seconds": {
                        "last": state.lags[-1][1] if state.lags else None,
                        "p50": quantile(recent, 0.5),
                        "p99": quantile(recent, 0.99),
                    },
                    "heartbeat": {
                        "lag_seconds": state.heartbeat_lag,
                        "age_seconds": round(figures.heartbeat_age(state, now), 3),
                    },
                }
            )
        shards = [
            {
                "source_table": table,
                "shard_id": shard_id,
                "target": str(target),
                "checkpoint": s.checkpoint,
                "ended": s.ended,
                "reading": s.reading,
            }
            for (table, shard_id, target), s in sorted(
                figures.shards.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))
            )
        ]
        totals: dict[str, Any] = {
            name: figures.summed(name) for name in (*TOTALS, *OUTCOMES_IN_ORDER)
        }
        skipped: collections.Counter[str] = collections.Counter()
        for label_pairs, count in figures.counts["records_skipped"].items():
            skipped[dict(label_pairs)["reason"]] += count
        totals["skipped"] = dict(skipped)
        history = list(figures.history)
        conflicts = list(reversed(figures.recent_conflicts))
    return {
        "service": {
            **service,
            "role": figures.leases.role(),
            "instance": figures.leases.owner,
            "started_at": figures.started_at,
            "now": now,
            "version": version("replicator"),
        },
        "totals": totals,
        "pairs": pairs,
        "shards": shards,
        "leases": figures.leases.status(),
        "history": history,
        "conflicts": conflicts,
    }
