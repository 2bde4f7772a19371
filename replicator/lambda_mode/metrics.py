"""Lambda mode's figures as CloudWatch embedded metric format (EMF) lines.

The applier reports to ``Metrics`` in both engines; in Lambda this subclass also
collects each invocation's figures per (source table, target) with Powertools'
``EphemeralMetrics``, and ``flush`` prints one EMF document per pair to stdout,
which Lambda sends to CloudWatch Logs, where the metrics are extracted.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from replicator.models import Outcome, TargetRef
from replicator.telemetry.metrics import Metrics

NAMESPACE = "replicator"
SERVICE = "replicator"
RECORD_LAG = "RecordLag"
HEARTBEAT_LAG = "HeartbeatLag"
RETRIES = "Retries"
VERSION_REGRESSIONS = "VersionRegressions"
CONFLICTS = "Conflicts"
TIE_READS = "KinesisTieReads"
SKIPPED = "RecordsSkipped"
OUTCOME_METRICS = {
    Outcome.APPLIED: "RecordsApplied",
    Outcome.SUPERSEDED: "RecordsSuperseded",
    Outcome.DUPLICATE: "RecordsDuplicate",
    Outcome.DEAD_LETTERED: "RecordsDeadLettered",
}


class EmfMetrics(Metrics):
    """``Metrics`` that also emits EMF, dimensions ``source_table`` and ``target`` (only
    ``source_table`` for what happens before a target is chosen: skips, tie reads)."""

    def __init__(self, *, source_region: str = "", mode: str = "one-way") -> None:
        super().__init__(source_region=source_region, mode=mode)
        self._emf: dict[tuple[str, TargetRef | None], EphemeralMetrics] = {}

    def outcome(
        self, source_table: str, target: TargetRef, outcome: Outcome, *, lag: float | None = None
    ) -> None:
        super().outcome(source_table, target, outcome, lag=lag)
        emf = self._emf_of(source_table, target)
        emf.add_metric(name=OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
        if lag is not None:
            emf.add_metric(name=RECORD_LAG, unit=MetricUnit.Seconds, value=max(0.0, lag))

    def heartbeat(
        self, source_table: str, target: TargetRef, *, sent_at: float, lag: float
    ) -> None:
        super().heartbeat(source_table, target, sent_at=sent_at, lag=lag)
        emf = self._emf_of(source_table, target)
        emf.add_metric(name=HEARTBEAT_LAG, unit=MetricUnit.Seconds, value=max(0.0, lag))

    def version_regression(self, source_table: str, target: TargetRef) -> None:
        super().version_regression(source_table, target)
        emf = self._emf_of(source_table, target)
        emf.add_metric(name=VERSION_REGRESSIONS, unit=MetricUnit.Count, value=1)

    def conflict(
        self, source_table: str, target: TargetRef, *, loser_region: str, winner_region: str
    ) -> None:
        super().conflict(
            source_table, target, loser_region=loser_region, winner_region=winner_region
        )
        emf = self._emf_of(source_table, target)
        emf.add_metric(name=CONFLICTS, unit=MetricUnit.Count, value=1)

    def skipped(self, source_table: str, reason: str) -> None:
        super().skipped(source_table, reason)
        emf = self._emf_of(source_table, None)
        emf.add_metric(name=SKIPPED, unit=MetricUnit.Count, value=1)

    def tie_read(self, source_table: str) -> None:
        super().tie_read(source_table)
        emf = self._emf_of(source_table, None)
        emf.add_metric(name=TIE_READS, unit=MetricUnit.Count, value=1)

    def write_retried(self, source_table: str, target: TargetRef) -> None:
        """A write to ``target`` failed for a retryable reason and is tried again.

        (The applier counts it by reason too; only here are its table and target known.)
        """
        self._emf_of(source_table, target).add_metric(name=RETRIES, unit=MetricUnit.Count, value=1)

    def flush(self) -> None:
        """Print this invocation's EMF documents (one per pair with figures) and start anew."""
        emf, self._emf = self._emf, {}
        for pair in emf.values():
            if pair.metric_set:  # empty when Powertools just printed a full set of 100 values
                pair.flush_metrics()

    def _emf_of(self, source_table: str, target: TargetRef | None) -> EphemeralMetrics:
        key = (source_table, target)
        emf = self._emf.get(key)
        if emf is None:
            emf = self._emf[key] = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
            emf.add_dimension(name="source_table", value=source_table)
            if target is not None:
                emf.add_dimension(name="target", value=str(target))
        return emf
