"""The fault proxy: a delay line per direction, bounded connections, a clean close.

Delays are asserted as lower bounds only (a delay line never delivers early); the one
upper bound checks that delays overlap instead of adding up, with a wide margin.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaos.proxy import Direction, FaultProxy, Faults

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[2]
SLACK = 0.005  # the loop's clock resolution, and then some


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    """A loopback server that sends back every byte and closes when its client does."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def round_trip(port: int, payload: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.monotonic()
        writer.write(payload)
        await writer.drain()
        answer = await reader.readexactly(len(payload))
        return answer, time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_round_trip_pays_both_delays_and_keeps_every_byte(echo: tuple[str, int]) -> None:
    payload = bytes(range(256)) * 1000  # several chunks
    async with FaultProxy(echo, faults=Faults.round_trip(0.1)) as proxy:
        answer, seconds = await round_trip(proxy.port, payload)
    assert answer == payload
    assert seconds >= 0.1 - SLACK
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)


async def test_each_direction_has_its_own_delay(echo: tuple[str, int]) -> None:
    faults = Faults(up_delay=0.06, down_delay=0.0)
    assert faults.delay(Direction.UP) == 0.06
    assert faults.delay(Direction.DOWN) == 0.0
    async with FaultProxy(echo, faults=faults) as proxy:
        _, seconds = await round_trip(proxy.port, b"ping")
    assert seconds >= 0.06 - SLACK


async def test_faults_can_change_while_traffic_flows(echo: tuple[str, int]) -> None:
    async with FaultProxy(echo) as proxy:
        _, fast = await round_trip(proxy.port, b"a")
        proxy.faults.down_delay = 0.08
        _, slow = await round_trip(proxy.port, b"b")
    assert slow >= 0.08 - SLACK
    assert fast < slow


async def test_delays_overlap_rather_than_add_up(echo: tuple[str, int]) -> None:
    """Ten requests in flight at once take about one round trip, not ten."""
    rtt = 0.3
    async with FaultProxy(echo, faults=Faults.round_trip(rtt)) as proxy:
        started = time.monotonic()
        answers = await asyncio.gather(*(round_trip(proxy.port, b"x" * 100) for _ in range(10)))
        elapsed = time.monotonic() - started
    assert all(answer == b"x" * 100 for answer, _ in answers)
    assert elapsed < 5 * rtt


async def test_chunks_on_one_connection_are_pipelined_in_order(echo: tuple[str, int]) -> None:
    rtt = 0.2
    async with FaultProxy(echo, faults=Faults.round_trip(rtt)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = time.monotonic()
        for number in range(5):
            writer.write(b"%d;" % number)
            await writer.drain()
            await asyncio.sleep(0.02)  # pacing the sender is the behaviour under test
        answer = await reader.readexactly(len(b"0;1;2;3;4;"))
        elapsed = time.monotonic() - started
        writer.close()
        await writer.wait_closed()
    assert answer == b"0;1;2;3;4;"
    assert elapsed < 4 * rtt


async def test_connections_over_the_limit_are_refused(echo: tuple[str, int]) -> None:
    async with FaultProxy(echo, max_connections=2) as proxy:
        held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(2)]
        for reader, writer in held:  # both are piped: an echo answers
            writer.write(b"hi")
            assert await reader.readexactly(2) == b"hi"
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.read() == b""  # closed at once
        writer.close()
        assert proxy.stats.refused == 1
        assert proxy.stats.active == 2
        for _, held_writer in held:
            held_writer.close()


async def test_an_unreachable_upstream_closes_the_client() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with FaultProxy(("127.0.0.1", port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.read() == b""
        writer.close()
    assert proxy.stats.refused == 1


async def test_aclose_cuts_open_connections_and_is_idempotent(echo: tuple[str, int]) -> None:
    proxy = FaultProxy(echo, faults=Faults.round_trip(0.02))
    await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    await proxy.aclose()
    await proxy.aclose()
    assert await reader.read() == b""
    assert proxy.stats.active == 0
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", proxy.port)


def test_only_loopback_addresses_are_accepted() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("10.0.0.1", 80))
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("127.0.0.1", 80), host="0.0.0.0")
    FaultProxy(("localhost", 80), host="::1")
    with pytest.raises(ValueError, match="max_connections"):
        FaultProxy(("127.0.0.1", 80), max_connections=0)


def test_the_command_announces_its_port_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "chaos.proxy", "--upstream", "127.0.0.1:9", "--rtt", "0.08"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("listening 127.0.0.1:")
        assert int(line.rsplit(":", 1)[1]) > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_the_command_refuses_a_remote_upstream() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "chaos.proxy", "--upstream", "192.0.2.1:80"],
        cwd=ROOT,
        capture_output=True,
        timeout=15,
        check=False,
    )
    assert answer.returncode == 2
    assert b"loopback" in answer.stderr
