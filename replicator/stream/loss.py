"""Loss is never silent: which checkpoints show records that can no longer be read.

Pure functions over the checkpoints loaded at start-up and the shards the stream lists
(DESIGN §5). Each finding raises the trimmed-data alarm, as ``TrimmedDataAccessException``
does while reading:

- a checkpoint of another stream: the table's stream was disabled and enabled again
  under a new ARN. The old stream's unread records and every write made while no
  stream was enabled were never replicated; the old checkpoints must not position a
  reader of the new stream (its sequence numbers are unrelated).
- a shard checkpointed before its end that the stream no longer lists: it aged out
  past the 24 h retention (shards roll over every few hours) with records after the
  checkpoint possibly unread.
- a shard still listed whose checkpoint is older than the retention: records written
  after it for longer than the retention may have been trimmed already.

The retention is DynamoDB Streams' 24 h, or what a Kinesis stream says it keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from replicator.models import Checkpoint, TargetRef
from replicator.stream.positions import order_key
from replicator.stream.source import DYNAMODB_STREAMS, Shard


@dataclass(frozen=True, slots=True)
class Loss:
    """Records of one shard that may never have been replicated."""

    shard_id: str
    checkpoint: str | None  # the oldest of its targets' checkpoints; None: nothing applied
    targets: tuple[TargetRef, ...]
    cause: str
    gap: str

    def alarm(self, source_table: str) -> str:
        """The ERROR line an operator reads: the shard, the checkpoint, the gap, the remedy."""
        return (
            f"DATA LOSS ALARM: {source_table} shard {self.shard_id} checkpointed at "
            f"{self.checkpoint or 'TRIM_HORIZON'} for {', '.join(map(str, self.targets))}: "
            f"{self.cause}; records {self.gap} may never have been replicated. "
            "Run `replicator verify --repair` for this table"
        )


def losses(
    positions: Mapping[tuple[str, TargetRef], Checkpoint],
    listed: Iterable[Shard],
    *,
    stream_arn: str,
    now: float,
    retention: float = DYNAMODB_STREAMS.retention_seconds,
) -> list[Loss]:
    """What the checkpoints of a source table say was lost, one finding per shard."""
    listed_ids = {shard.shard_id for shard in listed}
    per_shard: dict[str, list[Checkpoint]] = {}
    for (shard_id, _target), checkpoint in positions.items():
        if checkpoint.stream_arn != stream_arn or not checkpoint.shard_ended:
            per_shard.setdefault(shard_id, []).append(checkpoint)
    found = []
    for shard_id, open_ in sorted(per_shard.items()):
        oldest = min(open_, key=lambda c: order_key(c.sequence_number))
        at = oldest.sequence_number or "TRIM_HORIZON"
        targets = tuple(sorted({c.target for c in open_}, key=str))
        if old := next((c for c in open_ if c.stream_arn != stream_arn), None):
            cause = f"the stream was re-enabled under a new ARN (checkpoint of {old.stream_arn})"
            gap = (
                f"after sequence {at} of the old stream, and every write made while no "
                f"stream was enabled, up to the start of {stream_arn}"
            )
        elif shard_id not in listed_ids:
            hours = retention / 3600
            cause = f"the stream no longer lists the shard (past the {hours:g} h retention)"
            gap = f"after sequence {at} to the end of the shard"
        elif (saved := oldest.updated_at) is not None and now - saved > retention:
            cause = f"the checkpoint is {(now - saved) / 3600:.1f} h old, past the retention"
            gap = (
                f"after sequence {at}: up to {(now - saved - retention) / 3600:.1f} h of "
                "records may have been trimmed"
            )
        else:
            continue
        found.append(Loss(shard_id, oldest.sequence_number, targets, cause, gap))
    return found


def unreadable(
    positions: Mapping[tuple[str, TargetRef], Checkpoint],
    listed: Iterable[Shard],
    *,
    stream_arn: str,
) -> list[Checkpoint]:
    """Checkpoints no reader of ``stream_arn`` will use: another stream's, or of a shard
    the stream no longer lists (ended, or alarmed above as lost)."""
    listed_ids = {shard.shard_id for shard in listed}
    return [
        checkpoint
        for checkpoint in positions.values()
        if checkpoint.stream_arn != stream_arn or checkpoint.shard_id not in listed_ids
    ]
