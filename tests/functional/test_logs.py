"""``replicator run``'s log lines: JSON when asked (option or config), never a credential.

The service runs as operators run it, against the moto regions; a write without its version
attribute is dead-lettered, so the log holds a line about one record whose structured fields
(source table, key, target, reason) a log store can query.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

from replicator.config.schema import load_config
from tests.e2e.helpers import CLI, SOURCE, create_tables, stop, wait_until, write_config

pytestmark = pytest.mark.timeout(90)
# Credentials only this test uses: moto accepts any, and none may reach a log line.
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETSECRET"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENTOKENTOKEN"


def start(config: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, "run", "-c", str(config), "--log-level", "DEBUG", *options],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def text_of(log: Path) -> str:
    return log.read_text()


async def run_with_a_dead_letter(config: Path, log: Path, *options: str) -> str:
    """The whole log of a run that dead-lettered the key ``unversioned``."""
    await create_tables(load_config(config))
    table = load_config(config).pairs[0].source_table
    process = start(config, log, *options)
    try:
        source = boto3.client(
            "dynamodb", region_name=SOURCE, endpoint_url=load_config(config).endpoint_for(SOURCE)
        )
        source.put_item(TableName=table, Item={"pk": {"S": "unversioned"}})

        async def dead_lettered() -> bool:
            assert process.poll() is None, text_of(log)[-3000:]
            return "unversioned" in text_of(log)

        await wait_until(dead_lettered, within=45, what="the dead-letter line")
    finally:
        assert stop(process) == 0, text_of(log)[-3000:]
    return text_of(log)


@pytest.mark.parametrize("how", ["option", "config"])
async def test_every_line_is_a_json_object_with_the_fields_it_is_about(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path, how: str
) -> None:
    config = write_config(tmp_path / "replicator.yaml", endpoints, unique_name)
    options: tuple[str, ...] = ("--log-format", "json")
    if how == "config":
        config.write_text(
            yaml.safe_dump({**yaml.safe_load(config.read_text()), "log_format": "json"})
        )
        options = ()
    text = await run_with_a_dead_letter(config, tmp_path / "run.log", *options)

    lines = [json.loads(line) for line in text.splitlines()]  # each parses, or this fails
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    (dead,) = [line for line in lines if line["message"].startswith("dead-lettering")]
    assert dead["level"] == "ERROR"
    assert dead["source_table"] == unique_name
    assert dead["key"] == "pk=unversioned"
    assert dead["target"].startswith("eu-west-1")
    assert "version" in dead["reason"]
    assert any(line["message"].startswith("summary:") for line in lines)
    assert SECRET not in text and TOKEN not in text


async def test_no_text_line_carries_the_secret_key_or_the_session_token_even_at_debug(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "replicator.yaml", endpoints, unique_name)
    text = await run_with_a_dead_letter(config, tmp_path / "run.log", "--log-format", "text")
    assert "DEBUG" in text  # the most verbose level was on
    assert SECRET not in text
    assert TOKEN not in text
