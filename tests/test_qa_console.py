"""The QA review console against the real app, a real recording store and headless Chromium: listen, jump, review."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
from aiohttp.test_utils import TestClient
from live_peers import PASSWORD, running, signed_in_page
from playwright.async_api import expect

from recordings.qa import Review, coverage, draw_sample, save_review
from recordings.screening import SCORECARD, ScoreItem, Screening, Utterance, save_screening
from recordings.store import RecordingStore
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import AUTH
from voicebot.web.login import tag
from voicebot.web.qa_audio import RangeNotSatisfiable, byte_range
from voicebot.web.qa_charts import bar_chart, line_chart
from voicebot.web.qa_reports import csv_cell, months_back, report_csv

pytestmark = pytest.mark.model

MONTH = "2026-03"
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
THREAT = "rec-threat"
TAMPERED = "rec-tampered"
HOSTILE = '<img src=x onerror="window.__xss=1">'
HOSTILE_AGENT = "=1+2<b>x</b>"
ODD_CATEGORY = "<i>odd</i>"
GANG_FLAG = {"leg": "agent", "rule": "cn.threat.gang", "category": "gang", "severity": "critical",
             "start_s": 19.152, "end_s": 21.98}
USERS = {"quinn": "qa", "sup": "supervisor", "root": "admin"}


def record(store: RecordingStore, rid: str, agent: str, started_at: datetime, audio: np.ndarray, rate: int,
           flags: list[dict] | None = None) -> None:
    """Write a stereo call (agent left, customer right) in 20 ms packets as a live call does, then finish it."""
    store.register(rid, started_at=started_at, agent_id=agent, adapter="test")
    writer = store.writer(rid, started_at)
    piece = rate // 50
    for at in range(0, len(audio), piece):
        writer.write("agent", audio[at:at + piece, 0], rate)
        writer.write("customer", audio[at:at + piece, 1], rate)
    writer.close()
    store.finish(rid, ended_at=started_at + timedelta(seconds=writer.duration_s), duration_s=writer.duration_s,
                 sample_rate=writer.sample_rate, outcome="refused", flags=flags or [])


def tones(seconds: float = 1.0, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([3000 * np.sin(2 * np.pi * 440 * t), 3000 * np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.int16)


def threat_screening(call_turns: list[dict[str, str]]) -> Screening:
    """The threat call's screen: its real turns, a hostile line, the gang flag and a scorecard."""
    transcript = [Utterance(t["leg"], float(t["start_s"]), float(t["end_s"]), t["text"])
                  for t in call_turns if t["call"] == "call_agent_threat"]
    transcript.append(Utterance("customer", 26.3, 26.8, HOSTILE))
    scorecard = {item: ScoreItem("pass") for item in SCORECARD}
    scorecard["no_prohibited_language"] = ScoreItem("fail", f"gang threat at 0:19 {HOSTILE}")
    return Screening(recording_id=THREAT, transcript=transcript, flags=[GANG_FLAG], scorecard=scorecard)


def fill_store(engines, threat_call: Path, call_turns: list[dict[str, str]]) -> None:
    """March: the threat call and six more for a-07, one each for b-02 and a hostile agent, then the sample; then
    nine late b-02 calls (b-02 falls below the rate) and a tampered c-03 call. February: one reviewed a-07 call."""
    store, audit = engines.recordings, engines.audit
    audio, rate = soundfile.read(threat_call, dtype="int16", always_2d=True)
    record(store, THREAT, "a-07", START, audio, rate, flags=[GANG_FLAG])
    save_screening(store, threat_screening(call_turns))
    for i in range(6):
        odd = [{"leg": "agent", "rule": "x.odd", "category": ODD_CATEGORY, "severity": "low", "start_s": 0.2,
                "end_s": 0.5}] if i == 0 else []
        record(store, f"rec-a07-{i}", "a-07", START + timedelta(hours=i + 1), tones(), 8000, flags=odd)
    record(store, "rec-b02-0", "b-02", START + timedelta(days=1), tones(), 8000)
    record(store, "rec-hostile", HOSTILE_AGENT, START + timedelta(days=1, hours=1), tones(), 8000)
    draw_sample(store, audit, month=MONTH, rate=0.15, seed=7, actor="test")
    for i in range(1, 10):
        record(store, f"rec-b02-{i}", "b-02", START + timedelta(days=2, hours=i), tones(), 8000)
    record(store, TAMPERED, "c-03", START + timedelta(days=3), tones(), 8000)
    path = store.path(TAMPERED)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    february = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
    record(store, "rec-feb", "a-07", february, tones(), 8000)
    save_review(store, audit, Review(recording_id="rec-feb", reviewer="test", verdict="fail", at=february,
                                     marks={item: "fail" if item == "politeness" else "pass" for item in SCORECARD}))


@pytest.fixture
async def server(engines, config, threat_call, call_turns) -> AsyncIterator[str]:
    """The real app on 127.0.0.1 at a free port, its store holding the month's recordings, with three users."""
    fill_store(engines, threat_call, call_turns)
    app = create_app(config, ServeConfig(db=engines.audit.path, media_token="m" * 24), engines)
    async with running(app) as base:
        for name, role in USERS.items():
            app[AUTH].store.add_user(name, role, PASSWORD)
        yield base


@pytest.mark.browser
async def test_qa_reviews_a_recording_in_chromium_and_reports_show_coverage(server, browser, engines, tmp_path):
    base = server
    csp_errors: list[str] = []
    page = await signed_in_page(browser, base, "quinn", csp_errors)
    await expect(page.locator("#qa-link")).to_have_attribute("href", "/qa")
    await page.click("#qa-link")
    await page.wait_for_url(re.compile(r"/qa$"))
    await page.goto(f"{base}/qa?month={MONTH}")

    rows = page.locator("#recording-rows tr")
    assert await rows.count() == 19
    sampled = await page.locator("#recording-rows tr.sampled").count()
    first = [await r.get_attribute("class") for r in await rows.all()][:sampled]
    assert sampled >= 4 and first == ["sampled"] * sampled, "sampled recordings come first"
    threat_row = page.locator(f'tr[data-recording-id="{THREAT}"]')
    await expect(threat_row).to_have_class("sampled")
    await expect(threat_row).to_contain_text("a-07")
    await expect(threat_row).to_contain_text("0:26")
    await expect(threat_row.locator("td").nth(4)).to_have_text("80")
    await expect(threat_row.locator("td").nth(6)).to_have_text("no")
    await threat_row.locator("a").click()
    await page.wait_for_url(f"{base}/qa/recordings/{THREAT}")

    await page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=15_000)
    duration = await page.evaluate("document.getElementById('player').duration")
    assert duration == pytest.approx(429952 / 16000, abs=0.05)
    await expect(page.locator("#transcript .line.leg-agent")).to_have_count(3)
    await expect(page.locator("#transcript .line.leg-customer").last).to_contain_text(HOSTILE)
    await expect(page.locator('tr[data-item="no_prohibited_language"] td.auto')).to_have_text("fail")
    assert await page.locator("#transcript img, #review img, main img").count() == 0

    await page.click('#flags li.flag[data-category="gang"] button.seek')
    await page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 19.152) < 1.0")
    await page.click("#transcript .line.leg-customer >> nth=1")
    await page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 15.82) < 1.0")

    marks = {"identity_before_disclosure": "pass", "required_disclosures": "pass", "no_prohibited_language": "fail",
             "dispute_handled": "n/a", "politeness": "pass"}
    for item, mark in marks.items():
        await page.check(f'input[name="mark_{item}"][value="{mark}"]')
    await page.check('input[name="verdict"][value="coaching"]')
    notes = f"threat at 0:19 {HOSTILE}"
    await page.fill("#notes", notes)
    await page.click("#save-review")
    await page.wait_for_url(re.compile(r"\?saved=1"))
    await expect(page.locator("#saved")).to_have_text("Review saved.")
    await expect(page.locator("#last-review")).to_contain_text("by quinn")
    await expect(page.locator("#last-review")).to_contain_text("coaching, score 75")
    for item, mark in marks.items():
        await expect(page.locator(f'input[name="mark_{item}"][value="{mark}"]')).to_be_checked()
    await expect(page.locator("#notes")).to_have_value(notes)
    assert await page.evaluate("window.__xss") is None
    [audited] = [r for r in engines.audit.records() if r.kind == "qa_review" and r.actor == "quinn"]
    assert (audited.call_id, audited.data["verdict"], audited.data["score"]) == (THREAT, "coaching", 75.0)

    await page.goto(f"{base}/qa/reports?month={MONTH}")
    a07 = page.locator('#agent-rows tr[data-agent="a-07"]')
    await expect(a07.locator("td").nth(1)).to_have_text("7")
    await expect(a07.locator("td").nth(3)).to_have_text("1 (14%)")
    await expect(a07.locator("td").nth(6)).to_have_text("75.0")
    await expect(page.locator('#agent-rows tr[data-agent="b-02"]')).to_have_class("below-rate")
    await expect(page.locator('#agent-rows tr[data-agent="b-02"] td.below')).to_have_text("1 (10%)")
    await expect(page.locator(f'#agent-rows tr[data-agent="{HOSTILE_AGENT}"] td').first).to_have_text(HOSTILE_AGENT)
    bars = page.locator("#violations-chart svg.bar-chart g.bar")
    await expect(bars).to_have_count(2)
    await expect(page.locator('#violations-chart g.bar[data-label="gang"]')).to_have_attribute("data-count", "1")
    await expect(page.locator("#violations-chart svg")).to_contain_text(ODD_CATEGORY)
    points = page.locator('#trend-chart svg.line-chart g.series[data-label="a-07"] circle')
    assert [await p.get_attribute("data-month") for p in await points.all()] == ["2026-02", MONTH]
    assert [await p.get_attribute("data-value") for p in await points.all()] == ["80.0", "75.0"]
    assert await page.locator("main b, main i, main img").count() == 0

    async with page.expect_download() as download_info:
        await page.click("#csv-link")
    download = await download_info.value
    assert download.suggested_filename == f"qa-report-{MONTH}.csv"
    saved = tmp_path / "report.csv"
    await download.save_as(saved)
    table = list(csv.DictReader(saved.open(encoding="utf-8")))
    by_agent = {row["agent_id"]: row for row in table}
    assert set(by_agent) == {"a-07", "b-02", "c-03", "'" + HOSTILE_AGENT}
    assert (by_agent["b-02"]["recordings"], by_agent["b-02"]["sampled"], by_agent["b-02"]["sampled_pct"]) == (
        "10", "1", "10.0")
    assert by_agent["a-07"]["findings"] == f"{ODD_CATEGORY}=1; gang=1"
    assert by_agent["a-07"]["mean_score"] == "75.0"

    refused = await page.goto(f"{base}/qa/recordings/{TAMPERED}")
    assert refused is not None and refused.status == 409
    await expect(page.locator(".message")).to_contain_text("failed its integrity check")

    supervisor = await signed_in_page(browser, base, "sup", csp_errors)
    csrf = await supervisor.locator('meta[name="csrf-token"]').get_attribute("content")
    await expect(supervisor.locator("#qa-link")).to_have_attribute("href", "/qa/reports")
    await supervisor.click("#qa-link")
    await supervisor.wait_for_url(re.compile(r"/qa/reports$"))
    await supervisor.goto(f"{base}/qa/reports?month={MONTH}")
    await expect(supervisor.locator('#agent-rows tr[data-agent="a-07"]')).to_be_visible()
    await expect(supervisor.locator("#trend-chart svg.line-chart")).to_be_visible()
    request = supervisor.context.request
    assert (await request.get(f"{base}/qa/recordings/{THREAT}/audio")).status == 403
    posted = await request.post(f"{base}/qa/recordings/{THREAT}/review", headers={"Origin": base},
                                form={"csrf": csrf, "verdict": "pass", **{f"mark_{i}": "pass" for i in SCORECARD}},
                                max_redirects=0)
    assert posted.status == 403
    assert (await supervisor.goto(f"{base}/qa/recordings/{THREAT}")).status == 403

    stranger = await browser.new_context()
    unauthenticated = await stranger.request.get(f"{base}/qa/recordings/{THREAT}/audio", max_redirects=0)
    assert unauthenticated.status == 303
    assert unauthenticated.headers["location"].startswith("/login?next=")
    await stranger.close()
    assert len([r for r in engines.audit.records() if r.kind == "qa_review"]) == 2
    assert csp_errors == []


# --- the same endpoints over plain HTTP: ranges, roles, CSRF, refusals ---------------------------------------------


@pytest.fixture
async def client(aiohttp_client, engines, config) -> TestClient:
    """The real app with two short recordings (one tampered) and the three users."""
    store = engines.recordings
    record(store, "rec-1", "a-07", START, tones(2.0), 8000, flags=[GANG_FLAG])
    record(store, TAMPERED, "a-07", START + timedelta(hours=1), tones(), 8000)
    path = store.path(TAMPERED)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    app = create_app(config, ServeConfig(db=engines.audit.path, media_token="m" * 24), engines)
    client = await aiohttp_client(app)
    for name, role in USERS.items():
        app[AUTH].store.add_user(name, role, PASSWORD)
    return client


async def sign_in(client: TestClient, username: str) -> str:
    """Sign in through the form; the console's CSRF token."""
    client.session.cookie_jar.clear()
    form = await (await client.get("/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    response = await client.post("/login", data={"username": username, "password": PASSWORD, "csrf": csrf},
                                 allow_redirects=False)
    assert response.status == 303
    console = await (await client.get("/")).text()
    return re.search(r'name="csrf-token" content="([^"]+)"', console).group(1)


async def test_audio_is_a_stereo_wav_served_whole_or_by_byte_range_and_never_cached(client):
    await sign_in(client, "root")
    whole = await client.get("/qa/recordings/rec-1/audio")
    assert whole.status == 200
    assert (whole.headers["Content-Type"], whole.headers["Cache-Control"], whole.headers["Accept-Ranges"]) == (
        "audio/wav", "no-store", "bytes")
    body = await whole.read()
    audio, rate = soundfile.read(io.BytesIO(body), dtype="int16", always_2d=True)
    np.testing.assert_array_equal(audio, tones(2.0))
    assert rate == 8000
    part = await client.get("/qa/recordings/rec-1/audio", headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
    assert await part.read() == body[100:200]
    tail = await client.get("/qa/recordings/rec-1/audio", headers={"Range": "bytes=-10"})
    assert (tail.status, await tail.read()) == (206, body[-10:])
    past = await client.get("/qa/recordings/rec-1/audio", headers={"Range": f"bytes={len(body)}-"})
    assert (past.status, past.headers["Content-Range"]) == (416, f"bytes */{len(body)}")
    conditional = await client.get("/qa/recordings/rec-1/audio", headers={"Range": "bytes=0-9", "If-Range": "x"})
    assert conditional.status == 200


async def test_a_byte_range_decrypts_only_the_chunks_it_needs(client, engines):
    store = engines.recordings
    record(store, "rec-long", "a-07", START + timedelta(hours=2), tones(60.0), 8000)
    index = store.index_audio("rec-long")
    data = bytearray(store.path("rec-long").read_bytes())
    data[int(index.offsets[-2]) + 7] ^= 0x01  # a chunk near the end no longer opens
    store.path("rec-long").write_bytes(bytes(data))
    await sign_in(client, "root")
    size = 44 + 60 * 8000 * 4
    start = await client.get("/qa/recordings/rec-long/audio", headers={"Range": "bytes=0-143"})
    assert (start.status, start.headers["Content-Range"]) == (206, f"bytes 0-143/{size}")
    body = await start.read()
    np.testing.assert_array_equal(np.frombuffer(body[44:], "<i2").reshape(-1, 2), tones(60.0)[:25])
    middle = await client.get("/qa/recordings/rec-long/audio", headers={"Range": "bytes=960044-960047"})
    assert np.frombuffer(await middle.read(), "<i2").tolist() == tones(60.0)[240000].tolist()
    whole = await client.get("/qa/recordings/rec-long/audio")
    assert whole.status == 200, "the damaged chunk lies past the first block sent"
    with pytest.raises(aiohttp.ClientPayloadError):
        await whole.read()  # the stream is cut where the damage is
    assert (await client.get("/qa/recordings/rec-long")).status == 409, "the review page checks every chunk"


async def test_roles_csrf_and_refusals_over_http(client, engines):
    assert (await client.get("/qa/recordings/rec-1/audio", allow_redirects=False)).status == 303
    sup_csrf = await sign_in(client, "sup")
    listed = await client.get(f"/qa?month={MONTH}")  # a supervisor reads the month's list, without links or buttons
    assert listed.status == 200
    assert 'href="/qa/recordings/' not in await listed.text() and 'id="draw-sample"' not in await listed.text()
    refused = await client.post("/qa/sample", data={"csrf": sup_csrf, "month": MONTH}, allow_redirects=False)
    assert refused.status == 403
    assert (await client.get(f"/qa/reports?month={MONTH}")).status == 200
    assert (await client.get(f"/qa/reports.csv?month={MONTH}")).status == 200
    assert (await client.get("/qa/recordings/rec-1/audio")).status == 403
    review = {"verdict": "pass", **{f"mark_{i}": "pass" for i in SCORECARD}}
    denied = await client.post("/qa/recordings/rec-1/review", data={"csrf": sup_csrf, **review},
                               allow_redirects=False)
    assert denied.status == 403

    csrf = await sign_in(client, "quinn")
    assert (await client.get("/qa/reports?month=2026-13")).status == 400
    forged = await client.post("/qa/recordings/rec-1/review", data={"csrf": "forged", **review},
                               allow_redirects=False)
    assert forged.status == 403
    cross = await client.post("/qa/recordings/rec-1/review", data={"csrf": csrf, **review},
                              headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert cross.status == 403
    unmarked = await client.post("/qa/recordings/rec-1/review", data={"csrf": csrf, "verdict": "pass"},
                                 allow_redirects=False)
    assert unmarked.status == 400
    assert "Mark identity before disclosure" in await unmarked.text()
    missing = await client.post("/qa/recordings/nope/review", data={"csrf": csrf, **review}, allow_redirects=False)
    assert missing.status == 404
    saved = await client.post("/qa/recordings/rec-1/review", data={"csrf": csrf, **review}, allow_redirects=False)
    assert (saved.status, saved.headers["Location"]) == (303, "/qa/recordings/rec-1?saved=1#review")
    assert [r.actor for r in engines.audit.records() if r.kind == "qa_review"] == ["quinn"]

    page = await client.get("/qa/recordings/rec-1?saved=1")
    assert page.status == 200
    text = await page.text()
    assert '<audio id="player" controls preload="metadata" src="/qa/recordings/rec-1/audio">' in text
    assert "Review saved." in text and "Last review by quinn" in text
    assert (await client.get(f"/qa?month={MONTH}")).status == 200
    tampered = await client.get(f"/qa/recordings/{TAMPERED}")
    assert tampered.status == 409
    assert "failed its integrity check" in await tampered.text()
    tampered_audio = await client.get(f"/qa/recordings/{TAMPERED}/audio")
    assert tampered_audio.status == 409
    assert (await client.get("/qa/recordings/nope")).status == 404


# --- pure parts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-99", (0, 99)),
    ("bytes=100-", (100, 999)),
    ("bytes=-100", (900, 999)),
    ("bytes=-5000", (0, 999)),
    ("bytes=990-2000", (990, 999)),
    (None, None),
    ("bytes=5-1", None),
    ("bytes=0-1,5-6", None),
    ("items=0-1", None),
    ("bytes=-", None),
    ("bytes= 1-2x", None),
])
def test_byte_range(header, expected) -> None:
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_byte_range_past_the_end_is_not_satisfiable(header) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 1000)


def test_csv_cells_that_could_start_a_formula_are_quoted() -> None:
    assert [csv_cell(v) for v in ["=SUM(A1)", "+1", "-1", "@x", "\tx", "a-07", 3, 12.5]] == [
        "'=SUM(A1)", "'+1", "'-1", "'@x", "'\tx", "a-07", 3, 12.5]


def test_report_csv_has_one_row_per_agent(engines) -> None:
    store = engines.recordings
    record(store, "r1", "@agent", START, tones(), 8000, flags=[GANG_FLAG])
    text = report_csv(coverage(store, MONTH))
    assert list(csv.reader(io.StringIO(text))) == [
        ["agent_id", "recordings", "sampled", "sampled_pct", "reviewed", "reviewed_pct", "flagged", "findings",
         "mean_score", "verdict_pass", "verdict_coaching", "verdict_fail"],
        ["'@agent", "1", "0", "0.0", "0", "0.0", "1", "gang=1", "", "0", "0", "0"]]


def test_months_back_crosses_years() -> None:
    assert months_back("2026-02", 4) == ["2025-11", "2025-12", "2026-01", "2026-02"]


def test_markup_escapes_text_and_attributes() -> None:
    assert tag("td", HOSTILE, data_x='"><script>') == (
        '<td data-x="&quot;&gt;&lt;script&gt;">&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;</td>')
    assert tag("input", type="radio", checked=True, required=False) == '<input type="radio" checked>'


def test_charts_escape_labels_and_draw_nothing_without_data() -> None:
    bars = bar_chart({"<script>alert(1)</script>": 2, "gang": 1}, title="t<b>")
    assert "<script>" not in bars and "&lt;script&gt;alert(1)&lt;/script&gt;" in bars
    assert bars.count("<rect") == 2
    lines = line_chart(["2026-01", "2026-02", "2026-03"], {"<b>a</b>": [50.0, None, 70.0]}, title="s")
    assert "<b>" not in lines and "&lt;b&gt;a&lt;/b&gt;" in lines
    assert lines.count("<circle") == 2 and "<polyline" not in lines, "a missing month breaks the line"
    assert "chart-empty" in bar_chart({}, title="t") and "chart-empty" in line_chart(["2026-01"], {}, title="s")
