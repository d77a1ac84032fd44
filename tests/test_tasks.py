"""The collectors' task queue in the console (headless Chromium and plain HTTP): a collector closes their hardship
task with a note, may not touch another's, takes an unassigned one; supervisors see and reassign every task."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from live_peers import PASSWORD, signed_in_page
from playwright.async_api import expect
from test_console_day import serious_violations

from voicebot.campaigns.pauses import Pauses
from voicebot.web.keys import AUTH
from voicebot.web.tasks import TASKS

pytestmark = [pytest.mark.browser, pytest.mark.model]

NOW = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


async def test_a_collector_closes_a_hardship_task_in_the_console_and_it_is_audited(console_server, browser, engines):
    base, app = console_server
    app[AUTH].store.add_user("col1", "collector", PASSWORD)
    app[AUTH].store.add_user("col2", "collector", PASSWORD)
    book = app[TASKS]
    mine = book.raise_task("hardship", debt="示例银行/A1", campaign="c1", account_id="A1", cause="call:c9", at=NOW,
                           assignee="col1")
    theirs = book.raise_task("complaint", debt="示例银行/A2", campaign="c1", account_id="A2", cause="call:c8",
                             at=NOW, assignee="col2")
    queue = book.raise_task("transfer", debt="示例银行/A3", campaign="c1", account_id="A3", cause="call:c7", at=NOW)

    page = await signed_in_page(browser, base, "col1", [])
    await page.click("#tasks-link")
    await page.wait_for_url(re.compile(r"/tasks$"))
    rows = page.locator("#task-rows tr")
    assert sorted([await r.get_attribute("data-task-id") for r in await rows.all()]) == sorted(
        [mine.task_id, queue.task_id]), "their own and the unassigned, not another collector's"
    await expect(page.locator(f'tr[data-task-id="{mine.task_id}"]')).to_contain_text("Hardship")
    assert await serious_violations(page) == []
    row = page.locator(f'tr[data-task-id="{mine.task_id}"]')
    await row.locator('input[data-field="note"]').fill("payment plan agreed: 3 × 400")
    await row.locator('button[data-action="done"]').click()
    await expect(row).to_have_count(0)
    await page.locator(f'tr[data-task-id="{queue.task_id}"] button[data-action="take"]').click()
    await expect(page.locator(f'tr[data-task-id="{queue.task_id}"]')).to_contain_text("col1")

    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    request = page.context.request
    other = await request.post(f"{base}/api/tasks/{theirs.task_id}", headers={"X-CSRF-Token": csrf, "Origin": base},
                               data={"action": "done", "note": "not mine"})
    assert other.status == 403
    for_someone = await request.post(f"{base}/api/tasks/{queue.task_id}", headers={"X-CSRF-Token": csrf,
                                                                                  "Origin": base},
                                     data={"action": "assign", "assignee": "col2"})
    assert for_someone.status == 403
    closed = book.get(mine.task_id)
    assert (closed.status, closed.done_by, closed.note) == ("done", "col1", "payment plan agreed: 3 × 400")
    db = engines.audit.path
    assert b"payment plan agreed" not in b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")), \
        "the note is sealed at rest"
    events = [(r.actor, r.data["event"], r.data["kind"]) for r in engines.audit.records() if r.kind == "task"]
    assert ("col1", "done", "hardship") in events and ("col1", "assigned", "transfer") in events

    sup = await signed_in_page(browser, base, "sup", [])
    await sup.goto(base + "/tasks")
    theirs_row = sup.locator(f'tr[data-task-id="{theirs.task_id}"]')
    await theirs_row.locator('input[data-field="assignee"]').fill("col1")
    await theirs_row.locator('button[data-action="assign"]').click()
    await expect(theirs_row).to_contain_text("col1")
    quinn = await signed_in_page(browser, base, "quinn", [])
    assert (await quinn.goto(base + "/tasks")).status == 403


async def test_collection_analytics_page_and_csv_for_supervisors_only(console_server, browser):
    base, _ = console_server
    page = await signed_in_page(browser, base, "sup", [])
    await page.click("#collection-link")
    await page.wait_for_url(re.compile(r"/collection$"))
    await expect(page.locator('#rates tr[data-figure="contact_rate"]')).to_contain_text("—")  # nothing dialled yet
    await expect(page.locator("#accounts")).to_contain_text("0")
    assert await serious_violations(page) == []
    csv_text = await (await page.context.request.get(base + "/collection.csv")).text()
    assert csv_text.startswith("stage,script,accounts,promised,collected")
    quinn = await signed_in_page(browser, base, "quinn", [])
    csrf = await quinn.locator('meta[name="csrf-token"]').get_attribute("content")
    assert (await quinn.goto(base + "/collection")).status == 403
    refused = await quinn.context.request.post(base + "/collection/pauses", headers={"Origin": base}, form={
        "csrf": csrf, "action": "pause", "scope": "pack", "name": "cn-collection"})
    assert refused.status == 403


async def test_a_supervisor_pauses_and_resumes_a_campaign_in_the_console(console_server, browser, engines):
    base, _ = console_server
    page = await signed_in_page(browser, base, "sup", [])
    await page.goto(base + "/collection")
    await expect(page.locator("#pause-rows")).to_contain_text("Nothing is paused")
    await page.select_option("#pause-scope", "campaign")
    await page.fill("#pause-name", "c1 <b>")
    await page.click("#pause-button")
    row = page.locator('tr[data-pause="campaign:c1 <b>"]')
    await expect(row).to_contain_text("sup")
    with Pauses.open(engines.audit.path, engines.audit) as pauses:
        assert pauses.paused() == {("campaign", "c1 <b>")}, "no campaign run dials c1 now"
    csrf = await page.locator('#pause-form input[name="csrf"]').get_attribute("value")
    for bad in ({"scope": "account", "name": "no-slash"}, {"scope": "galaxy", "name": "c1"}, {"name": "x" * 201}):
        answer = await page.context.request.post(base + "/collection/pauses", headers={"Origin": base}, form={
            "csrf": csrf, "action": "pause", "scope": "campaign", **bad})
        assert answer.status == 400, bad
    await row.locator("button").click()
    await expect(page.locator("#pause-rows")).to_contain_text("Nothing is paused")
    assert [(r.kind, r.actor, r.data["name"]) for r in engines.audit.records() if r.kind in ("pause", "resume")] == [
        ("pause", "sup", "c1 <b>"), ("resume", "sup", "c1 <b>")]
    assert await serious_violations(page) == []
