"""The rules the model's replicators run: OURS by default, swappable for a teeth test.

``Rules`` reaches the real ``to_change``, ``coalesce``, ``decide`` and ``coalesces_into``, so
that a test can replace one with a deliberately broken variant and demand the checker notices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chaos.regions import META, Record
from replicator.apply.conflict import Loss, lost_write
from replicator.apply.rule import decide
from replicator.apply.selection import EVERYTHING, Selection
from replicator.models import Change, Incoming, ItemKey, Meta, Mode, Outcome, Stored, WireItem
from replicator.stream.kv import change_kv
from replicator.stream.records import Skip, coalesce, coalesces_into, to_change


class BatchRule(Protocol):
    def __call__(
        self, records: Iterable[Record], *, here: str, kv: bool = False
    ) -> dict[ItemKey, list[Change]]: ...


class DecideRule(Protocol):
    def __call__(
        self, stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode
    ) -> Outcome: ...


def filter_then_coalesce(
    records: Iterable[Record], *, here: str, kv: bool = False, selection: Selection = EVERYTHING
) -> dict[ItemKey, list[Change]]:
    """DESIGN §4 as the pipeline does it: filter each record, then the pair's
    ``selection`` (``batches.decode``), drop the skips, coalesce; with ``kv``
    (active-active) each change carries its ``_rep_kv`` first (§4b)."""
    changes: list[Change] = []
    for record in records:
        result = to_change(record, here=here, meta=META)
        if not isinstance(result, Skip):
            result = selection.select(result)
        if not isinstance(result, Skip):
            if kv:
                result = dataclasses.replace(result, kv=change_kv(result, here=here, meta=META))
            changes.append(result)
    return coalesce(changes)


class ConflictRule(Protocol):
    def __call__(
        self, change: Change, stored: WireItem | None, *, here: str, applied: bool, meta: Meta
    ) -> Loss | None: ...


class AheadRule(Protocol):
    def __call__(self, run: Sequence[Change], following: Sequence[Change]) -> bool: ...


@dataclass(frozen=True)
class Rules:
    """The rules under test; the defaults are the real ones."""

    batch: BatchRule = filter_then_coalesce
    decide: DecideRule = decide
    local_tombstones: bool = True  # DESIGN §4 rule 6, active-active only
    heal_zombies: bool = True  # DESIGN §4 rule 7: the local lane clears a zombie's flags
    # Whether a key's run is left to its next run, in the page read ahead.
    ahead: AheadRule = coalesces_into
    # One-way: what the verdict expects every target to hold, selection.replica_of(source).
    selection: Selection = EVERYTHING
    # Active-active: the conflict feed's rule, called at every apply (DESIGN §4b).
    conflict: ConflictRule = lost_write


def selecting(selection: Selection) -> Rules:
    """The real rules for a one-way pair that replicates ``selection`` of its items."""

    def batch(
        records: Iterable[Record], *, here: str, kv: bool = False
    ) -> dict[ItemKey, list[Change]]:
        return filter_then_coalesce(records, here=here, kv=kv, selection=selection)

    return Rules(batch=batch, selection=selection)
