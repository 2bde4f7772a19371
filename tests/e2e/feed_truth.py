"""Ground truth for the conflict feed from the application's side (DESIGN §4b).

Writers record each successful write with its **parent**, the write whose state it
overwrote (``ReturnValues=ALL_OLD``). A write is **lost** when the item every region
converged to does not descend from it; a **fork** is a chain of lost writes. The lineage
itself is the chaos checker's (``chaos.lineage``): the same definitions, on real writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chaos.lineage import Lineage, forks


@dataclass(frozen=True, slots=True)
class Write:
    """One successful application write, as its writer saw it."""

    wid: str
    key: str
    region: str
    read: str | None  # the write whose state the GetItem returned
    version: int
    parent: str | None  # the write whose state it overwrote (ALL_OLD)
    at: float  # time.monotonic() once it succeeded, to set a miss against the kill -9


def share(part: int, whole: int, empty: float) -> float:
    return part / whole if whole else empty


@dataclass
class Figures:
    writes: int = 0
    refused: int = 0  # attempts whose optimistic-locking condition failed
    lost: int = 0
    lost_named: int = 0
    forks: int = 0
    forks_reported: int = 0
    entries: int = 0
    false_entries: int = 0
    duplicates: int = 0
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def fork_share(self) -> float:
        return share(self.forks_reported, self.forks, 1.0)

    @property
    def false_share(self) -> float:
        return share(self.false_entries, self.entries, 0.0)

    def line(self) -> str:
        return (
            f"writes {self.writes} (refused {self.refused}), lost {self.lost} "
            f"({self.lost_named} named), forks {self.forks}, reported {self.forks_reported} "
            f"({self.fork_share:.1%}), entries {self.entries}, false {self.false_entries} "
            f"({self.false_share:.1%}), duplicates {self.duplicates}"
        )


def judge(entries: list[dict[str, Any]], writes: list[Write], final: dict[str, str]) -> Figures:
    """Compare ``conflicts list --json`` entries with the writes; ``final``: key -> the
    write id every region holds."""
    index = {w.wid: i for i, w in enumerate(writes)}
    lineage = Lineage(parent={i: index.get(w.parent or "") for i, w in enumerate(writes)})
    line = {i for wid in final.values() for i in lineage.line(index[wid])}
    lost = set(range(len(writes))) - line
    # One region writes a key's version once: versions only rise there, and each write is
    # conditional on the version it read.
    named = {(w.key, w.region, w.version): i for i, w in enumerate(writes)}
    figures = Figures(writes=len(writes), lost=len(lost), entries=len(entries))
    sides = Counter(
        (e["key"]["pk"]["S"], e["loser"]["origin"], e["loser"]["version"], e["loser"]["tombstone"])
        for e in entries
    )
    figures.duplicates = sum(n - 1 for n in sides.values())
    reported: set[int] = set()
    for entry in entries:
        loser, key = entry["loser"], entry["key"]["pk"]["S"]
        write = named.get((key, loser["origin"], loser["version"]))
        if write in lost and not loser["tombstone"]:
            reported.add(write)
            continue
        figures.false_entries += 1
        figures.false.append(
            f"{entry['id']} in {entry['detected_in']}: {key} lost {loser['origin']} "
            f"v{loser['version']} = {writes[write] if write is not None else 'no write'}, "
            f"kept {entry['winner']['origin']} v{entry['winner']['version']}"
        )
    figures.lost_named = len(reported)
    for fork in forks(lost, lineage):
        figures.forks += 1
        if fork & reported:
            figures.forks_reported += 1
        else:
            figures.missed.append(_missed(fork, writes, line))
    return figures


def _missed(fork: set[int], writes: list[Write], line: set[int]) -> str:
    """The fork's writes, and the other regions' writes of its key at nearby versions."""
    versions = {writes[i].version for i in fork}
    key = writes[min(fork)].key
    near = [
        f"{_text(w)}{' (kept)' if i in line else ''}"
        for i, w in enumerate(writes)
        if w.key == key and i not in fork and min(versions) - 1 <= w.version <= max(versions) + 1
    ]
    lost = ", ".join(_text(writes[i]) for i in sorted(fork))
    return f"{key}: {lost}; nearby: {'; '.join(near)}"


def _text(write: Write) -> str:
    return f"{write.wid} v{write.version} over {write.parent} at {write.at:.1f}"
