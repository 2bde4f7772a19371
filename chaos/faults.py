"""What the fault proxy does to traffic (``Faults``), which way bytes flow, and what it counted.

Values shared by the proxy and its links, in a module of their own so that neither imports
the other.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from dataclasses import dataclass, field

from chaos.httpfaults import FaultKind, HttpFault


class Direction(enum.StrEnum):
    UP = "up"  # client -> upstream
    DOWN = "down"  # upstream -> client


@dataclass
class Faults:
    """What the proxy does to traffic now; change it at any time."""

    up_delay: float = 0.0
    down_delay: float = 0.0
    jitter: float = 0.0  # each chunk waits up to this much more, uniformly
    bandwidth: float | None = None  # bytes per second per link (one direction of a connection)
    blackhole: bool = False  # swallow every byte both ways: nothing is ever answered
    http: list[HttpFault] = field(default_factory=list)  # HTTP mode only
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    @classmethod
    def round_trip(cls, seconds: float) -> Faults:
        """Half of ``seconds`` each way, so a request/response takes ``seconds`` more."""
        return cls(up_delay=seconds / 2, down_delay=seconds / 2)

    def delay(self, direction: Direction) -> float:
        base = self.up_delay if direction is Direction.UP else self.down_delay
        return base + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)

    def pick(self, target: str) -> FaultKind | None:
        """The fault a request for ``target`` (its X-Amz-Target) meets, if any."""
        for rule in self.http:
            if target.startswith(rule.only) and self.rng.random() < rule.share:
                return rule.kind
        return None

    def heal(self) -> None:
        """No more faults of any kind (the rng keeps its place in the sequence)."""
        self.up_delay = self.down_delay = self.jitter = 0.0
        self.bandwidth = None
        self.blackhole = False
        self.http = []


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0  # over ``max_connections``, while closing, or upstream unreachable
    active: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    # Per FaultKind (requests), and chunks "blackholed", "delayed" or "bandwidth-capped".
    injected: Counter[str] = field(default_factory=Counter)
