"""Where a checkpoint may point: after a sequence number, or at a time (a Kinesis replay).

A checkpoint holds one string. A stream's sequence numbers are decimal digits; a replay
(``replicator replay``) stores ``at:<epoch seconds>`` instead, which only the Kinesis
source reads (GetShardIterator AT_TIMESTAMP). Every record read from there is newer than
the marker, so wherever positions are ordered a marker sorts before every sequence number,
as the trim horizon does.
"""

from __future__ import annotations

from replicator.models import pad_seq

AT_TIME = "at:"


def at_time(seconds: float) -> str:
    """The position of the first record that arrived at or after ``seconds`` (epoch)."""
    return f"{AT_TIME}{seconds:.3f}"


def time_of(position: str | None) -> float | None:
    """The epoch seconds of a replay position; None for a sequence number or the horizon."""
    if position is None or not position.startswith(AT_TIME):
        return None
    return float(position.removeprefix(AT_TIME))


def is_sequence(position: str | None) -> bool:
    """Whether ``position`` is a stream's sequence number (not a time, not the horizon)."""
    return position is not None and position.isdigit()


def order_key(position: str | None) -> str:
    """Padded so that string order is stream order; the horizon and a time sort first."""
    return pad_seq(position) if position is not None and position.isdigit() else ""
