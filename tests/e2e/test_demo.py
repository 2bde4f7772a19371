"""``replicator demo`` ends with 0 differences and never leaves a moto server behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers import CLI

pytestmark = pytest.mark.slow


def processes_marked(marker: str) -> list[int]:
    """PIDs whose environment carries ``marker`` (the demo's moto servers inherit it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def start_demo(*args: str) -> tuple[subprocess.Popen[str], str]:
    marker = f"REPLICATOR_TEST_MARK={uuid.uuid4().hex}"
    name, value = marker.split("=")
    process = subprocess.Popen(
        [*CLI, "demo", "--web-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, name: value, "COLUMNS": "120"},
    )
    return process, marker


@pytest.mark.timeout(180)
def test_demo_verifies_0_differences_and_stops_its_servers() -> None:
    # 100 writes/s for 6 s: enough that some of the 1 % unversioned writes come up.
    process, marker = start_demo("--duration", "6", "--keys", "50", "--rate", "100")
    output, _ = process.communicate(timeout=150)
    assert process.returncode == 0, output
    assert "verify: 0 differences" in output
    assert "dashboard: http://127.0.0.1:" in output
    # The unversioned writes it dead-letters on purpose: one summary line, not one per record.
    assert "dead-lettered" in output and "records into the DLQ table replicator-dlq, e.g." in output
    assert output.count("dead-lettering") == 1, output
    summary = next(line for line in output.splitlines() if "into the DLQ table" in line)
    assert "orders key pk=unversioned-" in summary and "version" in summary.split(":")[-1]
    assert processes_marked(marker) == []


@pytest.mark.timeout(180)
def test_kinesis_source_demo_verifies_0_differences_through_kinesis_delivery() -> None:
    process, marker = start_demo(
        "--source", "kinesis", "--duration", "6", "--keys", "50", "--rate", "60"
    )
    output, _ = process.communicate(timeout=150)
    assert process.returncode == 0, output
    assert "verify: 0 differences" in output
    assert "via Kinesis" in output  # the live view's title
    delivered = re.search(r"Kinesis delivered as it may: (.*)", output)
    assert delivered, output
    # Reordered, duplicated and tied on the way, and still 0 differences.
    for kind in ("records held back", "records duplicated", "timestamp ties"):
        assert re.search(rf"{kind} [1-9]", delivered.group(1)), delivered.group(1)
    assert processes_marked(marker) == []


def test_kinesis_source_demo_is_one_way_only() -> None:
    process, marker = start_demo("--source", "kinesis", "--active-active")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2, output
    assert "--source kinesis runs the one-way demo" in output
    assert processes_marked(marker) == []


@pytest.mark.timeout(180)
def test_ctrl_c_ends_the_load_early_still_verifies_and_stops_its_servers() -> None:
    process, marker = start_demo("--duration", "600", "--keys", "50")
    assert process.stdout is not None
    for line in process.stdout:  # the dashboard line means the replicator is running
        if line.startswith("dashboard:"):
            break
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=150)
    assert process.returncode == 0, output
    assert "verify: 0 differences" in output
    assert processes_marked(marker) == []


@pytest.mark.timeout(180)
def test_active_active_demo_finds_every_lost_write_in_the_feed() -> None:
    process, marker = start_demo("--active-active", "--duration", "8", "--rate", "60")
    output, _ = process.communicate(timeout=150)
    assert process.returncode == 0, output
    assert "verify: 0 differences" in output
    assert output.count("dashboard: http://127.0.0.1:") == 2, output  # one per region
    closing = re.search(
        r"lost writes: (\d+) of (\d+) .* in (\d+) forks .*; (\d+) of the forks", output
    )
    assert closing, output
    lost, writes, forks, in_feed = map(int, closing.groups())
    assert writes > 100
    assert lost >= forks > 0, output  # the hot key set makes concurrent writers meet
    # Without deletes there is no REMOVE gap: §4b reports every fork (the line names a
    # missing one by key, version and region).
    assert in_feed == forks and "every lost write is in the feed" in output
    assert "not lost" not in output  # no entry names a write that won
    assert processes_marked(marker) == []
