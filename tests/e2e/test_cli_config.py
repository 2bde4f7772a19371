"""Bad configuration reaches the operator as one line naming the field, and exit code 2."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from replicator.config.schema import load_config
from tests.e2e.helpers import cli, create_tables, write_config

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("command", ["validate", "run", "verify"])
def test_every_command_rejects_a_bad_config_with_exit_code_2(command: str, tmp_path: Path) -> None:
    path = tmp_path / "replicator.yaml"
    path.write_text(
        "source_region: us-east-1\n"
        "pairs:\n"
        "  - source_table: orders\n"
        "    tombstone_ttl: 1h\n"
        "    targets: [{region: eu-west-1, table: orders}]\n"
    )
    result = cli(command, "-c", str(path))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "pairs[0].tombstone_ttl" in lines[0]


def test_a_missing_config_file_is_exit_code_2(tmp_path: Path) -> None:
    result = cli("validate", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_the_example_config_validates() -> None:
    result = cli("validate", "-c", "examples/replicator.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


async def test_run_with_the_dashboard_port_taken_says_so_in_one_line(
    tmp_path: Path, endpoints: dict[str, str], unique_name: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name, web_port=port)
        await create_tables(load_config(path))
        result = await asyncio.to_thread(cli, "run", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if "error" in line]
    assert problems == [
        f"config error web: cannot listen on 127.0.0.1:{port} (address already in use); choose "
        "another web.port or web.host, or set web.enabled: false"
    ]


def test_a_message_with_brackets_is_printed_as_written(tmp_path: Path) -> None:
    # A message is text, not console markup: '[/path]' had ended the CLI in a MarkupError.
    path = tmp_path / "replicator.yaml"
    path.write_text(
        "source_region: us-east-1\n"
        "endpoints: {eu-west-1: 'https://vpce.example/p?x=1'}\n"
        "pairs: [{source_table: orders, targets: [{region: eu-west-1, table: orders}]}]\n"
    )
    result = cli("validate", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "give scheme://host[:port][/path] only" in result.stderr


def test_an_endpoint_url_in_the_environment_that_is_no_url_stops_run_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "localhost:8000")
    path = tmp_path / "replicator.yaml"
    path.write_text(
        "source_region: us-east-1\n"
        "web: {enabled: false}\n"
        "pairs: [{source_table: orders, targets: [{region: eu-west-1, table: orders}]}]\n"
    )
    result = cli("run", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if "error" in line]
    assert problems == [
        "config error the dynamodb endpoint URL set in the environment or the AWS config is not "
        "scheme://host[:port][/path] — fix AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB or the "
        "profile's endpoint_url"
    ]
