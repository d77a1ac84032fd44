"""The console through a working day, in headless Debian Chromium: alerts across concurrent calls, today's calls after
a reload, deep links, the Chinese UI, the keyboard, a phone-sized screen and an axe-core accessibility check."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp import web
from axe_playwright_python.async_playwright import Axe
from live_peers import PASSWORD, SLOW_S, signed_in_page
from playwright.async_api import Page, expect
from test_console_browser import IN_HOURS

from voicebot.adapters.replay import load_call_audio, replay_call
from voicebot.call import Call, CallInfo
from voicebot.web.keys import AUTH, BOARD, ENGINES

pytestmark = [pytest.mark.browser, pytest.mark.model]

SERIOUS = ("serious", "critical")
SHOTS = os.environ.get("VOICEBOT_SHOTS")
"""A folder to save the README's screenshots in (`VOICEBOT_SHOTS=docs pytest tests/test_console_day.py`)."""


def replay(app: web.Application, path: Path, agent: str, speed: float = 3.0) -> tuple[CallInfo, asyncio.Task[Call]]:
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=IN_HOURS, speed=speed, agent_id=agent)
    return info, asyncio.create_task(replay_call(load_call_audio([path]), app[ENGINES], app[BOARD], info))


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    results = await Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)" for v in results.response["violations"]
            if v["impact"] in SERIOUS]


@pytest.fixture
def calls_dir(shared: Path) -> Path:
    return shared / "audio" / "tts-cmn" / "calls"


async def test_alerts_from_two_concurrent_calls_are_listed_acknowledged_and_audited(console_server, browser, calls_dir,
                                                                                   engines):
    base, app = console_server
    csp_errors: list[str] = []
    page = await signed_in_page(browser, base, "sup", csp_errors)
    threat, threat_done = replay(app, calls_dir / "call_agent_threat.wav", "a-07")
    dispute, dispute_done = replay(app, calls_dir / "call_dispute.wav", "a-09")
    critical = page.locator(f'#alerts li.sev-critical[data-kind="violation"]:has-text("{threat.call_id[:8]}")')
    disputed = page.locator(f'#alerts li[data-kind="signal"]:has-text("{dispute.call_id[:8]}")')
    await expect(critical.first).to_be_visible(timeout=SLOW_S)
    await expect(critical.first).to_contain_text("黑社会式恐吓")  # the pack's own words for the category
    await expect(critical.first).to_contain_text("a-07")
    await expect(disputed.first).to_be_visible(timeout=SLOW_S)
    await expect(disputed.first).to_contain_text("客户对债务提出异议")
    await expect(disputed.first).to_contain_text("a-09")
    await asyncio.wait_for(asyncio.gather(threat_done, dispute_done), 60)
    open_count = await page.locator("#alerts li:not(.acked)").count()
    assert await page.title() == f"({open_count}) Live calls · voicebot console"
    first_row = page.locator("#call-rows tr").first
    await expect(first_row).to_have_attribute("data-call-id", threat.call_id)  # the worst call leads the list

    await disputed.first.locator("button.ack").click()
    await expect(disputed.first).to_contain_text("acknowledged by sup", timeout=SLOW_S)
    assert await page.title() == f"({open_count - 1}) Live calls · voicebot console"
    acks = [r for r in engines.audit.records() if r.kind == "alert_ack"]
    assert [(r.actor, r.call_id, r.data["kind"]) for r in acks] == [("sup", dispute.call_id, "signal")]
    await disputed.first.locator("button.link").click()
    await expect(page.locator("#detail-id")).to_have_text(dispute.call_id)
    assert page.url.endswith(f"#call={dispute.call_id}")
    assert csp_errors == []


async def test_ended_calls_survive_a_reload_and_open_from_a_deep_link(console_server, browser, calls_dir):
    base, app = console_server
    page = await signed_in_page(browser, base, "sup", [])
    info, done = replay(app, calls_dir / "call_agent_threat.wav", "a-07", speed=4.0)
    await asyncio.wait_for(done, 60)
    await page.reload()
    row = page.locator(f'tr[data-call-id="{info.call_id}"]')
    await expect(row).to_have_class("ended")
    await expect(row).to_contain_text("Ended: hangup")
    await row.click()
    await expect(page.locator('#flags li.sev-critical[data-category="gang"]').first).to_be_visible()
    await expect(page.locator("#transcript .line.leg-agent.final").first).to_be_visible()
    await expect(page.locator('#action-bar button[data-action="hangup"]')).to_be_disabled()

    linked = await browser.new_page()
    await linked.context.add_cookies(await page.context.cookies())
    await linked.goto(f"{base}/#call={info.call_id}")
    await expect(linked.locator("#detail-id")).to_have_text(info.call_id, timeout=15_000)
    await expect(linked.locator("#detail-status")).to_contain_text("Ended")
    await expect(linked.locator(f'tr[data-call-id="{info.call_id}"]')).to_have_attribute("aria-selected", "true")


async def test_keyboard_selects_rows_and_keeps_focus_through_live_updates(console_server, browser, calls_dir):
    base, app = console_server
    page = await signed_in_page(browser, base, "sup", [])
    info, done = replay(app, calls_dir / "call_ptp.wav", "a-07", speed=1.0)
    row = page.locator(f'tr[data-call-id="{info.call_id}"]')
    await expect(row).to_be_visible(timeout=15_000)
    await row.focus()
    await page.keyboard.press("Space")
    await expect(row).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#detail-id")).to_have_text(info.call_id)
    lines = page.locator("#transcript .line.leg-agent")
    await expect(lines.first).to_be_visible(timeout=SLOW_S)
    await expect(lines.nth(1)).to_be_visible(timeout=SLOW_S)  # live updates went on meanwhile
    assert await page.evaluate("document.activeElement.dataset.callId") == info.call_id
    mute = page.locator('#action-bar button[data-focus-key="action-mute"]')
    await mute.focus()
    await page.keyboard.press("Enter")
    await expect(mute).to_have_attribute("aria-pressed", "true", timeout=SLOW_S)
    assert await page.evaluate("document.activeElement.dataset.focusKey") == "action-mute"
    assert await serious_violations(page) == []
    app[BOARD].calls[info.call_id].act("hangup", actor="test", reason="done")
    await asyncio.wait_for(done, 60)


async def test_chinese_ui_chosen_by_the_user_and_by_the_browser(console_server, browser, calls_dir):
    base, app = console_server
    page = await signed_in_page(browser, base, "sup", [])
    await page.locator("details.prefs summary").click()
    await page.select_option("#pref-language", "zh")
    await page.fill("#pref-zone", "Asia/Shanghai")
    await page.locator("details.prefs button[type=submit]").click()
    await page.wait_for_url(base + "/")
    assert await page.get_attribute("html", "lang") == "zh"
    await expect(page.locator("h1")).to_have_text("语音机器人控制台")
    await expect(page.locator("#calls-title")).to_have_text("通话")
    info, done = replay(app, calls_dir / "call_agent_threat.wav", "a-07", speed=4.0)
    row = page.locator(f'tr[data-call-id="{info.call_id}"]')
    await expect(row).to_contain_text("10:00", timeout=15_000)  # started at 10:00 in the user's zone
    await expect(page.locator("#alerts li.sev-critical").first).to_contain_text("严重", timeout=SLOW_S)
    await asyncio.wait_for(done, 60)
    await expect(row).to_contain_text("已结束")
    assert app[AUTH].store.user("sup").zone == "Asia/Shanghai"

    context = await browser.new_context(locale="zh-CN")  # a user who chose nothing: the browser's language
    fresh = await context.new_page()
    await fresh.goto(base + "/login")
    await fresh.fill("#username", "quinn")
    await fresh.fill("#password", PASSWORD)
    await fresh.click("#sign-in")
    await fresh.wait_for_url(base + "/")
    assert await fresh.get_attribute("html", "lang") == "zh"
    await expect(fresh.locator("#action-bar")).to_be_hidden()
    await context.close()


async def test_phone_screen_shows_cards_with_flags_above_the_transcript(console_server, browser, calls_dir):
    base, app = console_server
    page = await signed_in_page(browser, base, "sup", [])
    await page.set_viewport_size({"width": 390, "height": 844})
    info, done = replay(app, calls_dir / "call_agent_threat.wav", "a-07", speed=4.0)
    await asyncio.wait_for(done, 60)
    row = page.locator(f'tr[data-call-id="{info.call_id}"]')
    await row.click(timeout=15_000)
    await expect(page.locator("#flags li").first).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    flags_y = (await page.locator("#flags").bounding_box())["y"]
    buttons_y = (await page.locator("#action-bar").bounding_box())["y"]
    transcript_y = (await page.locator("#transcript").bounding_box())["y"]
    assert buttons_y < flags_y < transcript_y
    assert await page.locator("table.calls thead").evaluate("e => e.getBoundingClientRect().height") <= 1
    assert await serious_violations(page) == []


async def test_console_has_no_serious_accessibility_violations(console_server, browser, calls_dir):
    base, app = console_server
    page = await signed_in_page(browser, base, "sup", [])
    await page.set_viewport_size({"width": 1440, "height": 900})
    _, threat_done = replay(app, calls_dir / "call_agent_threat.wav", "a-07")
    dispute, dispute_done = replay(app, calls_dir / "call_dispute.wav", "a-09", speed=1.0)
    await expect(page.locator("#alerts li.sev-critical").first).to_be_visible(timeout=SLOW_S)
    await page.locator(f'tr[data-call-id="{dispute.call_id}"]').click()
    await expect(page.locator("#transcript .line").first).to_be_visible(timeout=SLOW_S)
    await asyncio.wait_for(threat_done, 60)
    await expect(page.locator('#flags li[data-category="signal"]:has-text("异议")').first).to_be_visible(timeout=SLOW_S)
    assert await serious_violations(page) == []
    if SHOTS:
        await page.screenshot(path=Path(SHOTS) / "console.png")
    app[BOARD].calls[dispute.call_id].act("hangup", actor="test", reason="done")
    await asyncio.wait_for(dispute_done, 60)


async def test_admin_renames_changes_role_and_resets_a_password_and_the_users_console_closes(console_server, browser,
                                                                                            engines):
    base, app = console_server
    app[AUTH].store.add_user("root", "admin", PASSWORD)
    sup = await signed_in_page(browser, base, "sup", [])
    admin = await signed_in_page(browser, base, "root", [])
    await admin.goto(base + "/admin/users")
    await expect(admin.locator("#name-rule")).to_contain_text("a–z 0–9")
    row = admin.locator('tr[data-username="sup"]')
    await row.locator('input[data-field="display_name"]').fill("王主管")
    await row.get_by_role("button", name="Save name").click()
    await expect(row).to_contain_text("王主管")
    await row.locator('select[data-field="role"]').select_option("qa")
    await expect(row).to_contain_text("QA")
    assert await serious_violations(admin) == []
    await row.locator('input[data-field="password"]').fill("another password 1")
    await row.get_by_role("button", name="Reset password").click()
    await expect(sup).to_have_url(base + "/login", timeout=5_000)  # its event stream was closed at once
    events = [(r.actor, r.data["event"]) for r in engines.audit.records() if r.kind == "user"]
    assert events == [("root", "display_name"), ("root", "role"), ("root", "password")]
    again = await signed_in_page_as(browser, base, "sup", "another password 1")
    await expect(again.locator("#whoami")).to_have_text("王主管")
    await expect(again.locator("#action-bar")).to_be_hidden()


async def signed_in_page_as(browser, base: str, username: str, password: str) -> Page:
    page = await browser.new_page()
    await page.goto(base + "/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#sign-in")
    await page.wait_for_url(base + "/")
    return page
