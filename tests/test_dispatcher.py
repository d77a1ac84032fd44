"""Calls spread by kamailio's dispatcher over voicebot nodes, with the config the project ships
(deploy/kamailio/voicebot-dispatcher.cfg): a node that is down, or full and refusing, is skipped."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_peers import Peers, fill, finished, free_port, health, listening, sip_port, start_serve, stop_serve
from test_sip import Server, kamailio, live_test, serve  # noqa: F401 (serve is a fixture)

DISPATCHER = Path(__file__).resolve().parent.parent / "deploy" / "kamailio" / "voicebot-dispatcher.cfg"


@pytest.fixture
def one_call_node(tmp_path: Path, midday_zone: str) -> Iterator[tuple[int, int]]:
    """`voicebot serve` in its own process, taking one call at a time on SIP: (web port, SIP port)."""
    web, sip = free_port(), sip_port()
    proc = start_serve(web, tmp_path / "node-b", tmp_path / "node-b.log", "--sip-listen", f"127.0.0.1:{sip}",
                       "--tz", midday_zone, "--max-calls", "1", "--idle-timeout", "300")
    yield web, sip
    stop_serve(proc)


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
        if health(full_web)[1]["calls"]:
            break
        time.sleep(0.1)
    assert health(full_web)[1]["full"], "the other node holds its one call"

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
    assert health(full_web)[1]["calls"] == 1, "the full node kept its own call and took none of these"
