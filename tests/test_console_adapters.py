"""The console in headless Debian Chromium while a threat arrives through each real adapter path.

A supervisor is signed in before the call starts; the call then comes in over SIP/RTP from sipp, from an emulated
Twilio Media Streams peer, or from emulated Asterisk AudioSocket channels. The monitor hangs it up, the console
shows the flag while the call is still live, then the engine's hang-up, and the audit log holds both.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from live_peers import (
    CONNECTED,
    PASSWORD,
    SLIN_SILENCE,
    SLOW_S,
    ULAW_SILENCE,
    Peers,
    assert_threat_hung_up,
    call_records,
    collect,
    fill,
    finished,
    next_event,
    open_call,
    running,
    send_media,
    signed_in_page,
    sip_port,
    slin_packets,
    start_message,
    ulaw_packets,
)
from playwright.async_api import Browser, Page, expect

from voicebot.adapters.audiosocket_frames import AudioSocketFrame, Kind
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import AUTH, BOARD

pytestmark = [pytest.mark.browser, pytest.mark.model]

TOKEN = "t" * 32
WATCH_ROWS = """() => {
  window.__rows = [];
  new MutationObserver(() => {
    for (const tr of document.querySelectorAll("#call-rows tr")) {
      window.__rows.push([tr.dataset.callId, ...[...tr.cells].map((td) => td.textContent)]);
    }
  }).observe(document.getElementById("call-rows"), { childList: true, subtree: true, characterData: true });
}"""
"""Record every call row the console renders or updates: [call id, id, agent, started, elapsed, debtor's time, flags,
status]."""


@dataclass
class Console:
    """The real app served on 127.0.0.1, and a queue of its board's events."""

    app: web.Application
    base: str
    events: asyncio.Queue


@pytest.fixture
async def console(engines, config, midday_zone: str) -> AsyncIterator[Callable[..., Awaitable[Console]]]:
    """Start the app (real model, fresh audit log, a supervisor); keyword arguments go to ServeConfig."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: object) -> Console:
            serve = ServeConfig(db=engines.audit.path, media_token=TOKEN, zones=(midday_zone,), **options)
            app = create_app(config, serve, engines)
            base = await stack.enter_async_context(running(app))
            app[AUTH].store.add_user("sup", "supervisor", PASSWORD)
            return Console(app=app, base=base, events=app[BOARD].listen(maxsize=0))

        yield start


async def watching(browser: Browser, base: str, csp_errors: list[str]) -> Page:
    """The supervisor's console, signed in and recording every call row it renders."""
    page = await signed_in_page(browser, base, "sup", csp_errors)
    await page.evaluate(WATCH_ROWS)
    return page


async def assert_console_saw_threat_hung_up(page: Page, call_id: str, adapter: str) -> None:
    """The call names its adapter; its gang flag showed while it was live; then the engine's hang-up, the end."""
    row = page.locator(f'tr[data-call-id="{call_id}"]')
    await row.click(timeout=15_000)
    await expect(page.locator("#detail-id")).to_have_text(call_id)
    await expect(page.locator("#detail-meta")).to_contain_text(f"{adapter} · ")
    await expect(page.locator('#flags li.sev-critical[data-category="gang"]').first).to_be_visible(timeout=SLOW_S)
    await expect(page.locator('#actions li[data-action="hangup"]').first).to_contain_text("by engine")
    await expect(page.locator("#detail-status")).to_contain_text("Ended: hangup", timeout=SLOW_S)
    await expect(row).to_contain_class("ended")
    rows = [r for r in await page.evaluate("window.__rows") if r[0] == call_id]
    assert rows[0][7].startswith("Live") and rows[-1][7].startswith("Ended")
    assert any(int(r[6].split(" ")[0] or 0) >= 1 and r[7].startswith("Live") for r in rows), \
        "the flag was not shown while the call was live"


@pytest.mark.sip
@pytest.mark.skipif(not (shutil.which("sipp") and shutil.which("sox")), reason="needs sipp and sox")
async def test_console_shows_flag_of_sipp_call_hung_up(console, browser: Browser, peers: Peers, phone_audio, engines,
                                                      tmp_path: Path) -> None:
    port = sip_port()
    server = await console(sip_listen=f"127.0.0.1:{port}")
    csp_errors: list[str] = []
    page = await watching(browser, server.base, csp_errors)
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a11"],
                    HEADERS="\n      X-Agent-Id: agent-7")
    sipp = await peers.sipp("sipp", scenario, f"127.0.0.1:{port}", "-s", "4001")
    call_id = (await next_event(server.events, "call_start"))["call_id"]
    end = await next_event(server.events, "call_end")

    assert await finished(sipp) == 0, "sipp did not see our BYE:\n" + peers.log("sipp")
    assert end["reason"].startswith("hangup")
    await assert_console_saw_threat_hung_up(page, call_id, "sip")
    await expect(page.locator(f'tr[data-call-id="{call_id}"]')).to_contain_text("agent-7")
    assert_threat_hung_up(call_records(engines, call_id))
    assert csp_errors == []


async def test_console_shows_flag_of_twilio_stream_hung_up_emulated_twilio_peer(console, browser: Browser, engines,
                                                                                shared: Path) -> None:
    server = await console()
    csp_errors: list[str] = []
    page = await watching(browser, server.base, csp_errors)
    agent = ulaw_packets(shared / "audio" / "tts-cmn" / "a11.wav") + [ULAW_SILENCE] * 1500
    async with ClientSession() as session, session.ws_connect(f"{server.base}/media/twilio/{TOKEN}") as ws:
        await ws.send_json(CONNECTED)
        await ws.send_json(start_message(["inbound", "outbound"], agent_id="agent-7"))
        replies = asyncio.create_task(collect(ws))
        sent = await send_media(ws, {"outbound": agent, "inbound": []})
        await replies
    call_id = (await next_event(server.events, "call_start"))["call_id"]

    assert sent < len(agent), "the server did not close the stream before the peer ran out of audio"
    assert ws.close_code == 1000
    await assert_console_saw_threat_hung_up(page, call_id, "twilio")
    assert_threat_hung_up(call_records(engines, call_id))
    assert csp_errors == []


async def test_console_shows_flag_of_audiosocket_call_hung_up_emulated_asterisk_peer(console, browser: Browser,
                                                                                     engines, shared: Path) -> None:
    server = await console(audiosocket_port=0)
    csp_errors: list[str] = []
    page = await watching(browser, server.base, csp_errors)
    (agent, customer), call_id = await open_call(server.app, server.events)
    threat = slin_packets(shared / "audio" / "tts-cmn" / "a11.wav") + [SLIN_SILENCE] * 500
    sent, _ = await asyncio.gather(agent.play(threat), customer.play([SLIN_SILENCE] * 500))
    await asyncio.gather(agent.closed.wait(), customer.closed.wait())

    assert sent < len(threat), "the server did not hang up before the agent ran out of audio"
    assert agent.heard[-1] == customer.heard[-1] == AudioSocketFrame(Kind.HANGUP)
    await assert_console_saw_threat_hung_up(page, call_id, "audiosocket")
    assert_threat_hung_up(call_records(engines, call_id))
    assert csp_errors == []
