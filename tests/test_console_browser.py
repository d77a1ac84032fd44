"""The console in headless Debian Chromium: sign in, watch replayed calls live, press the buttons, stay XSS-safe."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from live_peers import SLOW_S, signed_in_page
from playwright.async_api import expect

from voicebot.adapters.replay import load_call_audio, replay_call
from voicebot.call import Call, CallInfo
from voicebot.web.keys import BOARD, ENGINES

pytestmark = [pytest.mark.browser, pytest.mark.model]

IN_HOURS = datetime(2025, 3, 3, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
"""Inside the pack's calling window, so the call clock never ends a test call."""


def start_replay(app: web.Application, path: Path, speed: float) -> tuple[CallInfo, asyncio.Task[Call]]:
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=IN_HOURS, speed=speed, agent_id="a-07")
    audio = load_call_audio([path])
    return info, asyncio.create_task(replay_call(audio, app[ENGINES], app[BOARD], info))


async def test_console_shows_a_threat_call_live_with_its_flag_and_the_hangup(console_server, browser, threat_call):
    base, app = console_server
    csp_errors: list[str] = []
    page = await signed_in_page(browser, base, "sup", csp_errors)
    info, replay = start_replay(app, threat_call, speed=3.0)
    row = page.locator(f'tr[data-call-id="{info.call_id}"]')
    await expect(row).to_be_visible(timeout=15_000)
    await expect(row).to_contain_text("a-07")
    await row.click()
    await expect(page.locator("#detail-id")).to_have_text(info.call_id)
    await expect(page.locator("#detail-meta")).to_contain_text("replay · in-path")
    await expect(page.locator("#transcript .line.leg-agent.final").first).to_be_visible(timeout=SLOW_S)
    await expect(page.locator("#transcript .line.leg-customer").first).to_be_visible(timeout=SLOW_S)
    gang = page.locator('#flags li.sev-critical[data-category="gang"]')
    await expect(gang.first).to_be_visible(timeout=SLOW_S)
    marked = page.locator("#transcript .line.leg-agent.flagged.sev-critical mark.sev-critical")
    await expect(marked.first).to_be_visible()
    shown = {await m.text_content() for m in await page.locator("#flags li.sev-critical .matched").all()}
    assert await marked.first.text_content() in shown
    await expect(page.locator('#actions li[data-action="hangup"]').first).to_contain_text("engine")
    await expect(page.locator("#detail-status")).to_contain_text("Ended", timeout=SLOW_S)
    await expect(row).to_contain_class("ended")
    call = await asyncio.wait_for(replay, 60)
    assert call.ended_reason is not None and call.ended_reason.startswith("hangup")
    assert csp_errors == []


async def test_supervisor_mutes_and_hangs_up_a_lawful_call_from_the_buttons(console_server, browser, shared, engines):
    base, app = console_server
    csp_errors: list[str] = []
    page = await signed_in_page(browser, base, "sup", csp_errors)
    info, replay = start_replay(app, shared / "audio" / "tts-cmn" / "calls" / "call_ptp.wav", speed=1.0)
    row = page.locator(f'tr[data-call-id="{info.call_id}"]')
    await row.click(timeout=15_000)
    await expect(page.locator("#transcript .line.leg-agent").first).to_be_visible(timeout=SLOW_S)
    mute = page.locator('#action-bar button[data-focus-key="action-mute"]')
    await expect(mute).to_have_attribute("aria-pressed", "false")
    await mute.click()
    await expect(page.locator('#actions li[data-action="mute"][data-actor="sup"]')).to_be_visible(timeout=SLOW_S)
    await expect(page.locator("#detail-status")).to_contain_text("muted: agent")
    await expect(row).to_contain_text("muted")
    await expect(mute).to_have_text("Unmute agent")
    await expect(mute).to_have_attribute("aria-pressed", "true")
    await page.click('#action-bar button[data-action="hangup"]')  # asks first
    await page.click('#action-bar button[data-action="cancel-hangup"]')
    await page.click('#action-bar button[data-action="hangup"]')
    assert call_is_live(app, info)
    await page.click('#action-bar button[data-action="confirm-hangup"]')
    await expect(page.locator("#detail-status")).to_contain_text("Ended: hangup: supervisor", timeout=SLOW_S)
    await expect(page.locator('#action-bar button[data-action="hangup"]')).to_be_disabled()
    call = await asyncio.wait_for(replay, 60)
    assert call.ended_reason == "hangup: supervisor"
    by_user = [(r.data["action"], r.data["leg"], r.data["reason"])
               for r in engines.audit.records() if r.kind == "action" and r.actor == "sup"]
    assert by_user == [("mute", "agent", "supervisor"), ("hangup", None, "supervisor")]
    assert csp_errors == []


def call_is_live(app: web.Application, info: CallInfo) -> bool:
    call = app[BOARD].calls.get(info.call_id)
    return call is not None and call.ended_reason is None


async def test_hostile_transcript_is_shown_as_text_and_qa_gets_no_buttons(console_server, browser):
    base, app = console_server
    csp_errors: list[str] = []
    page = await signed_in_page(browser, base, "quinn", csp_errors)
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    board, call_id = app[BOARD], "fake-call-xss"
    board.publish({"call_id": call_id, "type": "call_start", "adapter": "<b>sip</b>", "mode": "tap",
                   "started_at": IN_HOURS.isoformat(), "agent_id": "<i>x</i>"})
    board.publish({"call_id": call_id, "type": "final", "leg": "agent", "text": payload, "start_s": 1.0,
                   "end_s": 2.0})
    board.publish({"call_id": call_id, "type": "flag", "leg": "agent", "rule": "cn.threat.gang", "category": "gang",
                   "severity": "critical", "matched": "<script>", "span": [0, 8], "start_s": 1.0, "end_s": 2.0,
                   "signal": False})
    row = page.locator(f'tr[data-call-id="{call_id}"]')
    await expect(row).to_contain_text("<i>x</i>", timeout=15_000)
    await row.click()
    await expect(page.locator("#detail-meta")).to_contain_text("<b>sip</b>")
    line = page.locator("#transcript .line.leg-agent")
    await expect(line).to_contain_text(payload)
    await expect(line.locator("mark.sev-critical")).to_have_text("<script>")
    assert await page.locator("#transcript img, #transcript script, #calls-panel b").count() == 0
    assert await page.evaluate("window.__xss") is None
    await expect(page.locator("#action-bar")).to_contain_text("Read-only (qa)")
    assert await page.locator("#action-bar button").count() == 0
    assert await page.locator("#admin-link").is_hidden()
    assert csp_errors == []
