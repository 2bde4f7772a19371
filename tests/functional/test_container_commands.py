"""The Dockerfile and the ECS task's commands, parsed and run here (this machine has no
container engine): the entrypoint serves /healthz, passes its own HEALTHCHECK and drains on
SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from replicator.config.schema import load_config
from replicator.demo.embedded import free_port
from tests.e2e.helpers import create_tables, stop, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
ECS = ROOT / "deploy" / "cloudformation" / "ecs.yaml"
DEFAULT_PORT = "9464"
# `replicator` and `python` resolve from this venv, as they do from the image's PATH.
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def single(name: str) -> str:
    (found,) = [args for instruction, args in instructions() if instruction == name]
    return found


def entrypoint() -> list[str]:
    argv: list[str] = json.loads(single("ENTRYPOINT"))  # exec form: replicator is PID 1
    return argv


def healthcheck() -> list[str]:
    options, command = single("HEALTHCHECK").split("CMD", 1)
    assert "--interval=" in options and "--timeout=" in options
    argv: list[str] = json.loads(command)
    return argv


@pytest.mark.timeout(30)
def test_the_dockerfile_builds_a_slim_non_root_image_of_the_product_only() -> None:
    steps = instructions()
    assert single("FROM") == "python:3.11-slim"
    runs = " ".join(a for i, a in steps if i == "RUN")
    user = single("USER")
    uid = re.search(rf"useradd .*--uid (\d+) .*\b{user}\b", runs)
    assert uid and int(uid[1]) > 0 and user != "root"
    names = [i for i, _ in steps]
    assert names.index("USER") < names.index("ENTRYPOINT")
    copied = " ".join(a for i, a in steps if i in {"COPY", "ADD"})
    assert not re.search(r"\b(tests|chaos|bench|examples)\b", copied)
    installs = runs
    assert "rm -rf replicator/demo" in installs  # the demo subpackage stays out
    # No extras, at the versions of the project's one lock.
    assert "pip install --no-cache-dir --constraint constraints.txt ." in installs
    assert "[" not in installs
    assert entrypoint() == ["replicator", "run"]  # the config comes from the environment
    assert "/healthz" in " ".join(healthcheck())


def _ready(command: list[str], port: int) -> Any:
    """An async check that runs a health-check command against ``port``."""
    argv = [part.replace(DEFAULT_PORT, str(port)) for part in command]

    async def check() -> bool:
        done = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, timeout=10, env={"PATH": PATH}
        )
        return done.returncode == 0

    return check


def launch(argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PATH": PATH, **env}
        )


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _serve_until_healthy_then_drain(
    process: subprocess.Popen[bytes], health: list[str], port: int, log: Path
) -> None:
    try:
        await wait_until(_ready(health, port), within=60, what="/healthz to answer 200")
        assert process.poll() is None
    finally:
        assert stop(process) == 0, tail(log)  # SIGTERM: drained, exit 0


@pytest.fixture
async def config(endpoints: dict[str, str], unique_name: str, tmp_path: Path) -> Path:
    """A config serving the web port it names, its tables created."""
    path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name, web_port=free_port())
    await create_tables(load_config(path))
    return path


def web_port(config: Path) -> int:
    return load_config(config).web.port


@pytest.mark.timeout(120)
async def test_the_image_entrypoint_serves_healthz_and_stops_cleanly_on_sigterm(
    config: Path, tmp_path: Path
) -> None:
    port = web_port(config)
    # A mounted config, named as the Dockerfile says: REPLICATOR_CONFIG=<its path>.
    log = tmp_path / "run.log"
    process = launch(entrypoint(), log, REPLICATOR_CONFIG=str(config))
    await _serve_until_healthy_then_drain(process, healthcheck(), port, log)


def ecs_container() -> dict[str, Any]:
    parsed, problems = decode(str(ECS))
    assert not problems
    container: dict[str, Any] = parsed["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"
    ][0]
    return container


@pytest.mark.timeout(120)
async def test_the_ecs_command_feeds_the_config_from_its_variable_and_drains_on_sigterm(
    config: Path, tmp_path: Path
) -> None:
    port = web_port(config)
    container = ecs_container()
    (variable,) = [secret["Name"] for secret in container["Secrets"]]
    health = [
        part["Fn::Sub"].replace("${WebPort}", DEFAULT_PORT) if isinstance(part, dict) else part
        for part in container["HealthCheck"]["Command"]
    ]
    assert health[0] == "CMD"
    # The task runs the image's own entry point, the config in the variable alone.
    assert "EntryPoint" not in container and "Command" not in container
    log = tmp_path / "run.log"
    text = await asyncio.to_thread(config.read_text)
    process = launch(entrypoint(), log, **{variable: text})
    await _serve_until_healthy_then_drain(process, health[1:], port, log)
    assert "summary:" in tail(log)  # replicator is PID 1: the SIGTERM reached it, it drained
