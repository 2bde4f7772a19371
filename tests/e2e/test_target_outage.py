"""``replicator run`` while its target region stops answering, then comes back (issue 11).

The target's moto server sits behind the fault proxy (``chaos.proxy``); a delay of an
hour on every byte sent to it is a blackhole: connections are accepted and never
answered. The process must stay up and say why it is not ready, and after the heal
drain to 0 differences and still stop on SIGTERM at once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from chaos.proxy import FaultProxy
from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from replicator.demo.embedded import free_port
from replicator.demo.loadgen import LoadGenerator
from tests.e2e.helpers import (
    SOURCE,
    TARGET,
    converged,
    create_tables,
    start_run,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow]

BLACKHOLE_SECONDS = 3600.0


async def readiness(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as answer:
        return answer.status, await answer.text()


@pytest.mark.timeout(240)
async def test_a_blackholed_target_region_is_waited_out_and_drained_after_the_heal(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    direct = load_config(write_config(tmp_path / "direct.yaml", endpoints, unique_name))
    await create_tables(direct)
    target = urlsplit(endpoints[TARGET])
    assert target.hostname is not None and target.port is not None
    log = tmp_path / "run.log"
    async with FaultProxy((target.hostname, target.port)) as proxy:
        port = free_port()
        config_path = write_config(
            tmp_path / "replicator.yaml",
            {SOURCE: endpoints[SOURCE], TARGET: proxy.url},
            unique_name,
            web_port=port,
        )
        url = f"http://127.0.0.1:{port}"
        process = start_run(config_path, log)
        clients = Clients(endpoints)
        try:
            source = await clients.json("dynamodb", SOURCE)
            await LoadGenerator(source, unique_name, keys=40, seed=1).run(operations=60)
            await converged(tmp_path / "direct.yaml", within=60)

            proxy.faults.up_delay = BLACKHOLE_SECONDS
            await LoadGenerator(source, unique_name, keys=40, seed=2).run(operations=120)

            async def unready() -> bool:
                status, reason = await readiness(url)
                return status == 503 and f"target write in {TARGET} failing for" in reason

            await wait_until(unready, within=60, what="/readyz to name the failing target write")
            assert process.poll() is None, log.read_text()[-3000:]

            proxy.faults.up_delay = 0.0
            await converged(tmp_path / "direct.yaml", within=90)
            assert process.poll() is None, log.read_text()[-3000:]
        finally:
            await clients.aclose()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert f"target write in {TARGET} failed" in text
    assert f"target write in {TARGET} recovered" in text
