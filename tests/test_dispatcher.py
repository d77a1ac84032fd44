"""Calls spread by kamailio's dispatcher over voicebot nodes, with the config the project ships
(deploy/kamailio/voicebot-dispatcher.cfg): a node that is down, or full and refusing, is skipped."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_peers import Peers, fill, finished, free_port, listening, sip_port
from test_sip import Server, kamailio, live_test, serve  # noqa: F401 (serve is a fixture)

DISPATCHER = Path(__file__).resolve().parent.parent / "deploy" / "kamailio" / "voicebot-dispatcher.cfg"


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return json.loads(r.read())


@pytest.fixture
def one_call_node(tmp_path: Path, midday_zone: str) -> Iterator[tuple[int, int]]:
    """`voicebot serve` in its own process, taking one call at a time on SIP: (web port, SIP port)."""
    web, sip, data = free_port(), sip_port(), tmp_path / "node-b"
    env = {**os.environ, "VOICEBOT_MEDIA_TOKEN": "n" * 32, "VOICEBOT_DATA_DIR": str(data)}
    with (tmp_path / "node-b.log").open("wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "voicebot"), "serve", "--port", str(web),
                                 "--db", str(data / "v.db"), "--rules-only", "--sip-listen", f"127.0.0.1:{sip}",
                                 "--tz", midday_zone, "--max-calls", "1", "--idle-timeout", "300"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError, ValueError):
                health(web)
                break
            time.sleep(0.2)
        yield web, sip
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@live_test
async def test_kamailio_skips_a_node_that_is_down_and_one_that_is_full(serve, one_call_node,  # noqa: F811
                                                                      peers: Peers, phone_audio,
                                                                      tmp_path: Path) -> None:
    live: Server = await serve()
    full_web, full_sip = one_call_node
    await listening(full_sip)
    hold = fill("uac_play_wait_bye.xml", tmp_path / "hold.xml", AUDIO=phone_audio["b02"], HEADERS="")
    await peers.sipp("hold", hold, f"127.0.0.1:{full_sip}", "-s", "4100")
    for _ in range(100):
        if health(full_web)["calls"]:
            break
        time.sleep(0.1)
    assert health(full_web)["full"], "the other node holds its one call"

    down = sip_port()  # nothing listens there
    nodes = tmp_path / "nodes.list"
    nodes.write_text("".join(f"1 sip:127.0.0.1:{port}\n" for port in (down, full_sip, live.port)))
    proxy = await kamailio(peers, DISPATCHER, NODES=str(nodes), NO_ANSWER_MS="1500")
    call = fill("uac_play_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["b02"], HEADERS="", PAUSE_MS="500")
    for n in range(3):
        sipp = await peers.sipp(f"call{n}", call, f"127.0.0.1:{proxy}", "-s", f"420{n}")
        await live.next("call_start", timeout_s=30)
        assert await finished(sipp) == 0, peers.log(f"call{n}") + peers.log("kamailio")
        await live.next("call_end")
    log = peers.log("kamailio")
    skipped = {int(code) for code in re.findall(r"did not take call \S+ \(status (\d+)\)", log)}
    assert {408, 486} <= skipped, log
    assert health(full_web)["calls"] == 1, "the full node kept its own call and took none of these"
