"""Which process replicates each source table: the role shown by status, dashboard and metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replicator.ha.lease import LeaseState, Role, role_of


@dataclass(frozen=True, slots=True)
class LeaseView:
    state: LeaseState
    holder: str  # the owner last seen in the lease item; "" when free
    seen_at: float  # when this process last read or wrote the lease


class LeaseBoard:
    """The latest lease state per source table, as this process's keepers report it."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[str, LeaseView] = {}
        self.owner = ""

    def report(self, source_table: str, state: LeaseState, holder: str) -> None:
        with self._lock:
            self._views[source_table] = LeaseView(state, holder, self._clock())

    def active(self, source_table: str) -> bool | None:
        """True when this process replicates the table; None before its lease was looked at."""
        with self._lock:
            view = self._views.get(source_table)
        return None if view is None else role_of(view.state) is Role.ACTIVE

    def role(self) -> str:
        """``active`` when this process replicates any table, else ``standby``."""
        with self._lock:
            states = [view.state for view in self._views.values()]
        if not states:
            return "starting"
        return Role.ACTIVE if any(role_of(s) is Role.ACTIVE for s in states) else Role.STANDBY

    def stale(self, max_age: float) -> str | None:
        """Why a standby is unhealthy: a table whose lease it has not read for ``max_age``."""
        now = self._clock()
        with self._lock:
            views = list(self._views.items())
        for table, view in views:
            if role_of(view.state) is Role.STANDBY and now - view.seen_at > max_age:
                return f"lease of {table} not read for {now - view.seen_at:.1f} s"
        return None

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            views = sorted(self._views.items())
        return [
            {
                "source_table": table,
                "role": role_of(view.state).value,
                "state": view.state.value,
                "holder": view.holder,
            }
            for table, view in views
        ]
