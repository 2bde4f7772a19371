"""Per key-hash bucket digests of visible state: how verify compares tables in bounded memory.

Every key falls into one of ``BUCKETS`` buckets by the hash of the key; a bucket's
digest is the XOR of one hash per key of (key, visible state). XOR does not care
about order, so parallel scan segments fold into the same digest, and a tombstone
(visible: nothing) adds nothing, exactly like absence. Two tables agree on a bucket
when the digests (and counts) agree; only the buckets that differ are compared key
by key, in groups small enough to hold their keys in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from replicator.apply.rule import Visible
from replicator.models import ItemKey

BUCKETS = 4096
KEYS_PER_PASS = 50_000  # keys held at once while comparing differing buckets key by key


def bucket_of(key: ItemKey) -> int:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest) % BUCKETS


def state_digest(key: ItemKey, seen: Visible) -> int:
    """A 128-bit hash of a key and what readers see of it (0 for nothing)."""
    if seen is None:
        return 0
    text = repr((key, _canonical(seen))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest())


def _canonical(value: Any) -> Any:
    # Equal values must hash equally: numbers normalised, sets and maps sorted.
    if isinstance(value, Decimal):
        return ("n", str(value.normalize()))
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted(repr(_canonical(v)) for v in value)))
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    return value  # a string, a bool, None, or a Binary (its repr holds its bytes)


@dataclass
class TableDigest:
    """The buckets of one table: XOR of state digests and number of visible keys."""

    digests: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, key: ItemKey, seen: Visible) -> None:
        if seen is None:
            return
        bucket = bucket_of(key)
        self.digests[bucket] ^= state_digest(key, seen)
        self.counts[bucket] += 1

    @property
    def keys(self) -> int:
        return sum(self.counts)


def differing_buckets(tables: Sequence[TableDigest]) -> list[int]:
    """Buckets on which not every table agrees."""
    first = tables[0]
    return [
        b
        for b in range(BUCKETS)
        if any(
            t.digests[b] != first.digests[b] or t.counts[b] != first.counts[b] for t in tables[1:]
        )
    ]


def passes(
    buckets: Iterable[int], tables: Sequence[TableDigest], *, budget: int = KEYS_PER_PASS
) -> list[frozenset[int]]:
    """Differing buckets grouped so that one group's keys (by the fullest table) fit ``budget``."""
    groups: list[frozenset[int]] = []
    group: set[int] = set()
    held = 0
    for bucket in buckets:
        size = max(t.counts[bucket] for t in tables)
        if group and held + size > budget:
            groups.append(frozenset(group))
            group, held = set(), 0
        group.add(bucket)
        held += size
    if group:
        groups.append(frozenset(group))
    return groups
