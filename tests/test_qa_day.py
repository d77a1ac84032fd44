"""QA through a working day in headless Chromium: filter the month, review the sample from the keyboard with the
automatic marks and a note per item, save and go on, read the reports' drill-downs and per-call CSV, draw the
sample and start screening from the page; and axe-core finds no serious accessibility violation."""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from live_peers import PASSWORD, SLOW_S, running, signed_in_page
from playwright.async_api import Page, expect
from test_console_day import SHOTS, serious_violations
from test_qa_console import MONTH, START, THREAT, USERS, fill_store, record, tones

from recordings.qa import latest_sample, reviews
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import AUTH

pytestmark = [pytest.mark.model, pytest.mark.browser]


@pytest.fixture
async def server(engines, config, threat_call, call_turns) -> AsyncIterator[tuple[str, web.Application]]:
    fill_store(engines, threat_call, call_turns)
    app = create_app(config, ServeConfig(db=engines.audit.path, media_token="m" * 24), engines)
    async with running(app) as base:
        for name, role in USERS.items():
            app[AUTH].store.add_user(name, role, PASSWORD)
        yield base, app


async def row_ids(page: Page) -> list[str]:
    return [await r.get_attribute("data-recording-id") for r in await page.locator("#recording-rows tr").all()]


async def test_reviewer_filters_the_month_and_reviews_the_sample_with_automatic_marks_and_save_and_next(
        server, browser, engines):
    base, _ = server
    page = await signed_in_page(browser, base, "quinn", [])
    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.goto(f"{base}/qa?month={MONTH}")
    sample = latest_sample(engines.recordings, MONTH)
    await expect(page.locator("#progress")).to_contain_text(f"0 of {len(sample.items)} sampled recordings reviewed")
    await expect(page.locator(f'tr[data-recording-id="{THREAT}"] td').nth(5)).to_contain_text("flagged")
    await page.check('#filters input[name="flagged"]')
    await page.click("#filters button[type=submit]")
    assert sorted(await row_ids(page)) == sorted([THREAT, "rec-a07-0"])
    await page.select_option("#filter-sort", "score")
    await page.uncheck('#filters input[name="flagged"]')
    await page.check('#filters input[name="sample"]')
    await page.click("#filters button[type=submit]")
    assert sorted(await row_ids(page)) == sorted(i.recording_id for i in sample.items)
    assert (await row_ids(page))[0] == THREAT, "the only screened one has the only score"
    assert await serious_violations(page) == []

    await page.goto(f"{base}/qa/recordings/{THREAT}")
    gang = page.locator("#transcript .line.leg-agent.flagged mark.sev-critical")
    await expect(gang.first).to_be_visible()
    await expect(page.locator('#flags li[data-category="gang"] .category')).to_have_text("黑社会式恐吓")
    await expect(page.locator('#flags li[data-rule="cn.signal.complaint"]')).to_contain_text("客户表示要投诉")
    why = await page.locator('tr[data-item="no_prohibited_language"] td.why').bounding_box()
    item = await page.locator('tr[data-item="no_prohibited_language"] th').bounding_box()
    assert why["width"] > 150 and item["width"] > 80, "scorecard columns are wide enough to read at 1440 px"
    assert await serious_violations(page) == []
    if SHOTS:
        await page.screenshot(path=Path(SHOTS) / "qa-review.png", full_page=True)

    await page.focus("#accept-auto")  # from here on, the keyboard alone
    await page.keyboard.press("Enter")
    for row in await page.locator("tr[data-item][data-auto]").all():
        auto = await row.get_attribute("data-auto")
        await expect(row.locator(f'input[type=radio][value="{auto}"]')).to_be_checked()
    await page.focus('input[name="note_no_prohibited_language"]')
    await page.keyboard.type("gang threat at 0:19")
    await page.focus('input[name="verdict"][value="fail"]')
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")  # the notes
    await page.keyboard.press("Tab")  # save
    await page.keyboard.press("Tab")  # save & next
    assert await page.evaluate("document.activeElement.id") == "save-next"
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/qa/recordings/(?!rec-threat)"))
    [saved] = [r for r in reviews(engines.recordings, month=MONTH) if r.recording_id == THREAT]
    assert saved.item_notes == {"no_prohibited_language": "gang threat at 0:19"}
    assert saved.marks["no_prohibited_language"] == "fail" and saved.verdict == "fail"
    next_id = page.url.rsplit("/", 1)[1]
    assert next_id in {i.recording_id for i in sample.items}

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{base}/qa/recordings/{THREAT}")
    await expect(page.locator('input[name="note_no_prohibited_language"]')).to_have_value("gang threat at 0:19")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_reports_count_calls_and_verdicts_drill_down_and_export_one_row_per_call(server, browser, tmp_path):
    base, app = server
    app[AUTH].store.set_settings("sup", zone="Asia/Shanghai")
    page = await signed_in_page(browser, base, "sup", [])
    await page.goto(f"{base}/qa/reports?month={MONTH}")
    gang = page.locator('#category-rows tr[data-category="gang"]')
    await expect(gang).to_contain_text("黑社会式恐吓")
    await expect(page.locator('#violations-chart g.bar[data-label="gang"] text').first).to_have_text("黑社会式恐吓")
    await expect(page.locator('#agent-rows tr[data-agent="a-07"] td').last).to_have_text("—")
    assert await serious_violations(page) == []
    async with page.expect_download() as info:
        await page.click("#calls-csv-link")
    saved = tmp_path / "calls.csv"
    await (await info.value).save_as(saved)
    table = list(csv.DictReader(saved.open(encoding="utf-8")))
    threat = next(r for r in table if r["recording_id"] == THREAT)
    assert (threat["agent_id"], threat["gang"], threat["auto_score"]) == ("a-07", "1", "80.0")
    assert threat["date (Asia/Shanghai)"] == "2026-03-02 18:00", "the user's zone, as on every page"
    await gang.locator("a").click()
    await page.wait_for_url(re.compile(r"category=gang"))
    assert await row_ids(page) == [THREAT]
    assert await page.locator("#recording-rows a").count() == 0, "a supervisor reads the list, without the audio"
    await expect(page.locator(f'tr[data-recording-id="{THREAT}"] td').first).to_have_text("2026-03-02 18:00")


async def test_qa_pages_in_chinese_for_a_user_who_chose_it(server, browser):
    base, app = server
    app[AUTH].store.set_settings("quinn", language="zh")
    page = await signed_in_page_zh(browser, base)
    await page.goto(f"{base}/qa?month={MONTH}")
    assert await page.get_attribute("html", "lang") == "zh"
    await expect(page.locator("h1")).to_have_text("语音机器人控制台 · 质检")
    await expect(page.locator("#filters")).to_contain_text("仅抽样")
    await page.goto(f"{base}/qa/recordings/{THREAT}")
    await expect(page.locator('tr[data-item="politeness"] th')).to_have_text("礼貌")
    await expect(page.locator("#save-next")).to_have_text("保存并复核下一条")
    await expect(page.locator("#transcript .line.leg-agent .who").first).to_have_text("坐席")
    await page.goto(f"{base}/qa/reports?month={MONTH}")
    await expect(page.locator("#calls-csv-link")).to_have_text("按通话导出 CSV")


async def signed_in_page_zh(browser, base: str) -> Page:
    """quinn's page, signed in through the Chinese sign-in form of a browser set to Chinese."""
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(base + "/login")
    await expect(page.locator("#sign-in")).to_have_text("登录")
    await page.fill("#username", "quinn")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(base + "/")
    return page


@pytest.fixture
async def april(engines, config) -> AsyncIterator[str]:
    """The app with one silent April call that is neither sampled nor screened."""
    record(engines.recordings, "rec-april", "a-07", START + timedelta(days=31), tones(2.0), 8000)
    app = create_app(config, ServeConfig(db=engines.audit.path, media_token="m" * 24), engines)
    async with running(app) as base:
        app[AUTH].store.add_user("quinn", "qa", PASSWORD)
        yield base


async def test_sample_and_screening_start_from_the_page_and_a_silent_call_is_not_marked_down(april, browser,
                                                                                             engines):
    base = april
    page = await signed_in_page(browser, base, "quinn", [])
    await page.goto(f"{base}/qa?month=2026-04")
    await expect(page.locator("#sample-note")).to_contain_text("No sample drawn yet")
    await page.click("#draw-sample button")
    await expect(page.locator("#sample-note")).to_contain_text("Sample of 1 recordings at rate 15%")
    assert [r.kind for r in engines.audit.records()].count("qa_sample") == 1
    await page.click("#start-screening button")
    for _ in range(int(SLOW_S)):
        if "Screened 1" in await page.locator("#screening-note").text_content():
            break
        await asyncio.sleep(1)
        await page.reload()
    await expect(page.locator("#screening-note")).to_contain_text("Screened 1, waiting 0, failed 0")
    await page.goto(f"{base}/qa/recordings/rec-april")
    await expect(page.locator("#no-transcript")).to_have_text("Screened: no speech was heard on either leg.")
    for item in ("required_disclosures", "politeness"):
        await expect(page.locator(f'tr[data-item="{item}"] td.auto')).to_have_text("n/a")

