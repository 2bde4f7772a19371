"""Operator conventions of the ``replicator`` command: --version and shell completion.

The installed console script is run as a shell runs it; completion is asked the way the
script that ``--install-completion`` writes asks it (bash's COMP_WORDS protocol).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import replicator

SCRIPT = str(Path(sys.executable).parent / "replicator")
pytestmark = pytest.mark.timeout(60)


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, **env},
    )  # fmt: skip


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"replicator {replicator.__version__}"


def test_show_completion_prints_a_bash_script_for_the_command() -> None:
    result = run("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "complete -o default -F _replicator_completion replicator" in result.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("replicator va", "validate"),
        ("replicator dlq p", "purge"),
        ("replicator run --log-f", "--log-format"),
    ],
)
def test_bash_completion_completes_commands_and_options(words: str, expected: str) -> None:
    cword = str(len(words.split()) - 1)
    result = run(_REPLICATOR_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.split()
