"""How the lab's Kinesis bridge stamps and delivers changes: as DynamoDB and Kinesis would.

Pure decisions over a seeded ``random.Random``; the bridge (``demo.kinesis_bridge``) does
the I/O. What a consumer of a table's Kinesis stream must survive (DESIGN §4c), each off
by default and switched on by a test, the demo or a chaos scenario:

- **ties**: the next change of a key gets the same ts as its previous one;
- **random shard**: a record lands on any shard, not on its key's;
- **duplicates**: a record is put twice, the copy up to ``spread`` changes later;
- **held back**: a record is put after the key's next change (or ``spread`` changes later);
- **replays**: every ``replay_every`` changes, the last ``replay_window`` ones are put again;
- **other tables**: a record of another ``tableName`` (``foreign_table``) with the same key.

Why the bridge stamps ts itself: moto's stream records carry the write time to the
millisecond, so two changes of a key within one millisecond would share a ts by chance and
a test could not say how many ties it made. DynamoDB promises only that a key's ts never
decreases; ``Stamper`` keeps that promise with the write time as a floor, moves each
further change of a key one unit past the previous one, and makes a tie exactly when
``tie_share`` says so.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Precision = Literal["MICROSECOND", "MILLISECOND"]
_UNITS_PER_SECOND: dict[Precision, int] = {"MICROSECOND": 1_000_000, "MILLISECOND": 1_000}


@dataclass(frozen=True, slots=True)
class Delivery:
    """The bridge's options; the defaults deliver each change once, on its key's shard."""

    seed: int = 0
    precision: Precision = "MICROSECOND"
    tie_share: float = 0.0
    random_shard: bool = False
    duplicate_share: float = 0.0
    hold_share: float = 0.0
    spread: int = 50  # how many later changes a held record or a duplicate copy may wait
    replay_every: int = 0  # 0: never
    replay_window: int = 20
    foreign_share: float = 0.0
    foreign_table: str = "bridge-foreign"
    # Held records and copies waiting at once; past it a record is put at once, once.
    max_pending: int = 1_000
    # Seconds every shard must have been idle before what waits is put anyway.
    linger: float = 0.5

    def __post_init__(self) -> None:
        shares = (self.tie_share, self.duplicate_share, self.hold_share, self.foreign_share)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ValueError(f"every share must lie in [0, 1]: {self}")
        if self.spread < 1 or self.replay_every < 0 or self.replay_window < 1:
            raise ValueError(f"spread and replay_window must be >= 1, replay_every >= 0: {self}")

    @classmethod
    def like_kinesis(cls, seed: int = 0) -> Delivery:
        """Every option on, at shares that show each within a few hundred changes.

        Change one with ``dataclasses.replace``.
        """
        return cls(
            seed=seed,
            tie_share=0.1,
            random_shard=True,
            duplicate_share=0.1,
            hold_share=0.15,
            replay_every=100,
            replay_window=10,
            foreign_share=0.1,
        )


class Stamper:
    """Each change's ts in the stream's precision: per key never decreasing, ties by choice.

    Remembers the last ts of every key it saw (a lab's key space, a few thousand keys).
    Changes of a key must be stamped in write order, as a stream shard delivers them.
    """

    def __init__(self, precision: Precision, tie_share: float, rng: random.Random) -> None:
        self._units = _UNITS_PER_SECOND[precision]
        self._tie_share = tie_share
        self._rng = rng
        self._last: dict[str, int] = {}
        self.ties = 0

    def stamp(self, key: str, written: float) -> int:
        """The ts of ``key``'s next change, written at epoch seconds ``written``."""
        previous = self._last.get(key)
        if previous is not None and self._rng.random() < self._tie_share:
            self.ties += 1
            return previous
        ts = int(written * self._units)
        if previous is not None:
            ts = max(ts, previous + 1)
        self._last[key] = ts
        return ts


@dataclass(frozen=True, slots=True)
class Put:
    """One record to put: ``key`` names the table and item, ``data`` is the base64 document."""

    key: str
    data: str


@dataclass(frozen=True, slots=True)
class _Waiting:
    put: Put
    due: int  # put once this many changes have been admitted


class Schedule:
    """Turns changes in write order into puts in Kinesis's order (see the module docstring).

    ``admit`` returns what to put now; ``flush`` what still waits. Every admitted change
    comes out of one of them at least once.
    """

    def __init__(self, delivery: Delivery, rng: random.Random) -> None:
        self._delivery = delivery
        self._rng = rng
        self._admitted = 0
        self._held: list[_Waiting] = []
        self._copies: list[_Waiting] = []
        self._recent: deque[Put] = deque(maxlen=delivery.replay_window)
        self._since_replay = 0
        self.counts: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self._held) + len(self._copies)

    def admit(self, put: Put) -> list[Put]:
        """What to put now that ``put`` was read, in order."""
        self._admitted += 1
        now: list[Put] = []
        if self._room() and self._rng.random() < self._delivery.hold_share:
            self.counts["held"] += 1
            self._held.append(self._later(put, least=1))
        else:
            self._emit(put, now)
            # A held change of this key goes after it: the key's later change arrives first.
            for waiting in self._take(self._held, lambda w: w.put.key == put.key):
                self._emit(waiting.put, now)
        for waiting in self._take(self._held, self._is_due):
            self._emit(waiting.put, now)
        now.extend(waiting.put for waiting in self._take(self._copies, self._is_due))
        return now

    def flush(self) -> list[Put]:
        """Everything still waiting, held changes first."""
        now: list[Put] = []
        for waiting in self._take(self._held, lambda _: True):
            self._emit(waiting.put, now)
        now.extend(waiting.put for waiting in self._take(self._copies, lambda _: True))
        return now

    def _emit(self, put: Put, now: list[Put]) -> None:
        """Put a change for the first time, with what that may bring: a copy, a replay."""
        now.append(put)
        self.counts["put"] += 1
        if self._room() and self._rng.random() < self._delivery.duplicate_share:
            self.counts["duplicate"] += 1
            self._copies.append(self._later(put, least=0))
        every = self._delivery.replay_every
        if not every:
            return
        self._recent.append(put)
        self._since_replay += 1
        if self._since_replay >= every:
            self._since_replay = 0
            self.counts["replayed"] += len(self._recent)
            now.extend(self._recent)

    def _later(self, put: Put, *, least: int) -> _Waiting:
        return _Waiting(put, self._admitted + self._rng.randint(least, self._delivery.spread))

    def _room(self) -> bool:
        return self.pending < self._delivery.max_pending

    def _is_due(self, waiting: _Waiting) -> bool:
        return waiting.due <= self._admitted

    @staticmethod
    def _take(waiting: list[_Waiting], chosen: Callable[[_Waiting], bool]) -> list[_Waiting]:
        """Remove and return the chosen entries, in the order they were added."""
        taken = [entry for entry in waiting if chosen(entry)]
        waiting[:] = [entry for entry in waiting if not chosen(entry)]
        return taken
