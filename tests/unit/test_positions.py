"""Checkpoint positions (a sequence number, or a replay's time) and ``replay --since``."""

from __future__ import annotations

import pytest

from replicator.errors import ConfigError
from replicator.stream.positions import at_time, is_sequence, order_key, time_of
from replicator.tools.replay import parse_since

NOW = 1_765_000_000.0  # 2025-12-06T05:46:40Z


def test_a_replay_time_sorts_before_every_sequence_number_like_the_horizon() -> None:
    positions = ["49590338271490256608559692538361571095921575989136588898", "7", at_time(NOW)]
    ordered = sorted(positions, key=order_key)
    assert ordered == [at_time(NOW), "7", positions[0]]
    assert order_key(None) == order_key(at_time(NOW)) == ""


def test_a_replay_time_reads_back_and_is_no_sequence_number() -> None:
    assert time_of(at_time(NOW + 0.25)) == NOW + 0.25
    assert time_of("12345") is None and time_of(None) is None
    assert not is_sequence(at_time(NOW)) and not is_sequence(None) and is_sequence("12345")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", NOW - 7200),
        ("3d", NOW - 3 * 86400),
        ("90m", NOW - 5400),
        ("2025-12-06T05:46:40Z", NOW),
        ("2025-12-06T05:46:40", NOW),  # no offset: UTC
        ("2025-12-06T06:46:40+01:00", NOW),
        ("2025-12-06T05:46:40.250Z", NOW + 0.25),
    ],
)
def test_since_is_an_iso_time_or_a_duration_back_from_now(text: str, seconds: float) -> None:
    assert parse_since(text, now=NOW) == pytest.approx(seconds)


def test_since_that_is_neither_says_what_to_give() -> None:
    with pytest.raises(ConfigError, match=r"use e\.g\. 2026-12-07T09:30:00Z or 2h"):
        parse_since("yesterday", now=NOW)
