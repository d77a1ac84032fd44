"""Dialog scripts: loading, line checks by the real rule packs, placeholders and safe filling."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from compliance_rules.engine import CallState, RuleEngine
from scripts_library import (
    LINES,
    ScriptError,
    ScriptFillError,
    bundled_scripts,
    format_value,
    load_script,
    select_script,
)
from scripts_library.load import SAMPLES, STATES
from voicebot.cli import main

SCRIPTS_DIR = Path(__file__).parents[1] / "scripts_library"
BUNDLED = bundled_scripts()


def flags(engine: RuleEngine, text: str, state: CallState) -> list[str]:
    return [f.rule for f in engine.check("agent", text, state) if f.category != "signal"]


def test_the_bundled_scripts_cover_every_stage_and_language():
    assert BUNDLED == ["cn-early", "cn-late", "cn-middle", "en-reminder"]
    stages = {name: (s.language, s.stage, s.pack, s.days) for name in BUNDLED for s in [load_script(name)]}
    assert stages == {"cn-early": ("zh", "early", "cn-collection", (1, 30)),
                      "cn-middle": ("zh", "middle", "cn-collection", (31, 60)),
                      "cn-late": ("zh", "late", "cn-collection", (61, None)),
                      "en-reminder": ("en", "any", "us-fdcpa-regf", (1, None))}


@pytest.mark.parametrize("name", BUNDLED)
def test_every_line_of_every_script_passes_its_pack_in_every_state_it_is_said_in(name: str):
    script = load_script(name)
    assert set(script.lines) == set(LINES)
    engine = RuleEngine.from_pack(script.pack)  # a fresh engine, not the loader's
    for line in script.lines.values():
        text = script.fill(line.id, SAMPLES[script.language])
        assert "{" not in text and "}" not in text
        for state in line.states:
            assert flags(engine, text, STATES[state]) == [], (line.id, state)


@pytest.mark.parametrize("name", BUNDLED)
def test_nothing_is_disclosed_before_verification(name: str):
    """Every line the dialog may say before verification, filled, passes as unverified and to a third party."""
    script = load_script(name)
    engine = RuleEngine.from_pack(script.pack)
    pre = [line for line in script.lines.values() if "unverified" in line.states]
    assert {"opening", "ask_name", "ask_id_digits", "third_party_callback", "goodbye"} <= {line.id for line in pre}
    for line in pre:
        text = script.fill(line.id, SAMPLES[script.language])
        assert not line.placeholders & {"amount", "due_date", "date"}, line.id
        assert flags(engine, text, CallState(verified=False)) == [], line.id
        assert flags(engine, text, CallState(verified=False, third_party=True)) == [], line.id
    disclosure = script.fill("verified_disclosure", SAMPLES[script.language])
    assert flags(engine, disclosure, CallState(verified=False)), "the disclosure must be refused before verification"


def test_the_english_script_gives_the_mini_miranda_only_after_verification():
    script = load_script("en-reminder")
    engine = RuleEngine.from_pack("us-fdcpa-regf")
    miranda = "This is an attempt to collect a debt by a debt collector"
    said = {line_id: script.fill(line_id, SAMPLES["en"]) for line_id in script.lines}
    assert [line_id for line_id, text in said.items() if miranda in text] == ["verified_disclosure"]
    assert "us.disclosure.before_verification" in flags(engine, said["verified_disclosure"], CallState(verified=False))
    assert "This call is recorded" in said["opening"] and "Example Recovery Services" in said["opening"]
    assert "Example Bank" not in said["opening"]  # the creditor would tell a third party there is a debt


def test_the_late_script_gives_a_lawful_notice_of_possible_legal_action():
    script = load_script("cn-late")
    text = script.fill("verified_disclosure", SAMPLES["zh"])
    assert "可能依法通过诉讼途径解决" in text
    assert flags(RuleEngine.from_pack("cn-collection"), text, CallState(verified=True)) == []


def test_the_opening_says_who_calls_for_whom_and_that_the_call_is_recorded():
    text = load_script("cn-early").fill("opening", SAMPLES["zh"])
    assert all(part in text for part in ("示例信息服务有限公司", "A017", "受示例银行委托", "录音"))


@pytest.mark.parametrize(("days", "language", "expected"), [
    (1, "zh", "cn-early"), (30, "zh", "cn-early"), (31, "zh", "cn-middle"), (60, "zh", "cn-middle"),
    (61, "zh", "cn-late"), (900, "zh", "cn-late"), (12, "en", "en-reminder"), (200, "en", "en-reminder"),
])
def test_select_script_by_days_overdue(days: int, language: str, expected: str):
    assert select_script(days, language).id == expected


def test_select_script_refuses_what_no_script_covers():
    with pytest.raises(ScriptError, match="no bundled zh script covers 0 days"):
        select_script(0, "zh")


# ---- scripts that must not load, with the file and line at fault ----------------------------------------------

def with_line(tmp_path: Path, base: str, line_id: str, text: str) -> tuple[Path, int]:
    """A copy of a bundled script with one line replaced; returns the file and that line's number."""
    source = (SCRIPTS_DIR / f"{base}.yaml").read_text(encoding="utf-8")
    quoted = json.dumps(text, ensure_ascii=False)  # a YAML double-quoted scalar
    source, count = re.subn(rf"^  {line_id}: .*$", lambda _: f"  {line_id}: {quoted}", source, flags=re.M)
    assert count == 1
    path = tmp_path / f"{base}-bad.yaml"
    path.write_text(source, encoding="utf-8")
    number = next(i for i, row in enumerate(source.splitlines(), 1) if row.startswith(f"  {line_id}:"))
    return path, number


@pytest.mark.parametrize(("base", "line_id", "text", "reason"), [
    ("cn-early", "opening", "您好，你这个老赖，本次通话将录音。",
     "breaks rule cn.insult.personal when said unverified"),
    ("cn-early", "opening", "您好，您的账单已经逾期了，本次通话将录音。",
     "breaks rule cn.disclosure.before_verification when said unverified"),
    ("cn-early", "ask_name", "请问是{name}吗？您在我们这里有一笔还款。",
     "breaks rule cn.disclosure.before_verification when said unverified"),
    ("cn-early", "third_party_callback", "请转告{name}尽快还钱。", "breaks rule cn.disclosure.third_party_on_line"),
    ("cn-early", "goodbye", "再见，别怪我没提醒你。", "breaks rule cn.threat.violence"),
    ("cn-late", "verified_disclosure", "{name}您好，您欠{lender}{amount}，明天法院就来抓你。",
     "breaks rule cn.legal.false_threat when said verified"),
    ("cn-late", "restate", "我们是法院执行局的，再不还就强制执行。", "breaks rule cn.impersonation.authority"),
    ("cn-middle", "confirm_promise", "好的，{date}前把{amount}转到我个人微信上。",
     "breaks rule cn.fees.personal_account"),
    ("cn-middle", "dispute_logged", "好的，不管怎样您都得先还钱。",
     "breaks rule * when said disputed"),  # pressing on, or disclosure: a dispute may come before verification
    # the pack's `unless` (私人事务) drops every hit in an utterance; each sentence is checked alone too
    ("cn-early", "third_party_callback", "我们有一件私人事务需要与{name}本人沟通。{name}在示例银行欠款未还。",
     "breaks rule cn.disclosure"),
    ("cn-middle", "dispute_logged", "好的，您的异议我们已经记录。不管怎样您都得先还钱。",
     "breaks rule * when said disputed"),  # pressing on, or disclosure: a dispute may come before verification
    ("en-reminder", "opening", "Hi, this is {agent_id}. This is an attempt to collect a debt. This call is recorded.",
     "breaks rule us.disclosure.before_verification when said unverified"),
    ("en-reminder", "restate", "If you don't pay today you'll go to jail.", "breaks rule us.legal.false_threat"),
    ("en-reminder", "dispute_logged", "Noted, but you still owe this.", "breaks rule us.dispute.pressing_on"),
])
def test_a_script_with_a_prohibited_line_does_not_load(tmp_path: Path, base: str, line_id: str, text: str,
                                                       reason: str):
    path, number = with_line(tmp_path, base, line_id, text)
    with pytest.raises(ScriptError) as caught:
        load_script(path)
    pattern = re.escape(f"{path}:{number}: line {line_id} {reason}").replace(r"\*", r"cn\.\S+")
    assert re.match(pattern, str(caught.value)), str(caught.value)
    assert caught.value.line == number


@pytest.mark.parametrize(("line_id", "text", "reason"), [
    ("ask_name", "请问是{name}吗？{amount}", "placeholder {amount} discloses the debt"),
    ("opening", "您好，{due_date}，本次通话将录音。", "placeholder {due_date} discloses the debt"),
    ("goodbye", "再见，{nickname}。", "unknown placeholder {nickname}"),
    ("goodbye", "再见，{name!r}。", "unknown placeholder {name}"),
    ("goodbye", "再见，{name:>40}。", "unknown placeholder {name}"),
    ("goodbye", "再见，{name.__class__}。", "unknown placeholder {name.__class__}"),
    ("goodbye", "再见，{name。", "bad placeholder syntax"),
    ("goodbye", "{date}再见。", "placeholder {date} has no value in this line"),
    ("callback_confirm", "好的，我们会再联系您。", "line callback_confirm must say {callback_time}"),
])
def test_placeholders_are_checked_at_load_time(tmp_path: Path, line_id: str, text: str, reason: str):
    path, number = with_line(tmp_path, "cn-early", line_id, text)
    with pytest.raises(ScriptError, match=re.escape(reason)) as caught:
        load_script(path)
    assert caught.value.line == number


def test_structural_errors_name_the_file_and_line(tmp_path: Path):
    source = (SCRIPTS_DIR / "cn-early.yaml").read_text(encoding="utf-8")
    rows = source.splitlines()

    def number(prefix: str) -> int:
        return next(i for i, row in enumerate(rows, 1) if row.startswith(prefix))

    cases = [
        (source.replace("language: zh", "language: fr"), number("language:"), "language must be one of zh, en"),
        (source.replace("days: [1, 30]", "days: [30, 1]"), number("days:"), "days must be [FIRST, LAST]"),
        (source.replace("id: cn-early", "id: Early Script"), number("id:"), "id must be lower-case"),
        (source.replace("  goodbye:", "  farewell:"), number("  goodbye:"), "lines: unknown field 'farewell'"),
        (re.sub(r"^  goodbye: .*\n", "", source, flags=re.M), number("lines:") + 1,  # the mapping's first row
         "lines: missing field 'goodbye'"),
        (source.replace("  goodbye: 感谢您的接听，祝您生活愉快，再见。", "  goodbye: [1, 2]"), number("  goodbye:"),
         "line goodbye must be non-empty text"),
        (source.replace("pack: cn-collection", "pack: nowhere"), number("pack:"), "pack 'nowhere' cannot be loaded"),
        (source.replace("pack: cn-collection", "pack: us-fdcpa-regf"), number("pack:"),
         "pack 'us-fdcpa-regf' is for language 'en', not 'zh'"),
        (source.replace("  opening: ", "  opening: [", 1), number("  opening:"), "invalid YAML"),
    ]
    for i, (text, line, reason) in enumerate(cases):
        path = tmp_path / f"case{i}.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ScriptError) as caught:
            load_script(path)
        assert caught.value.line == line, (reason, str(caught.value))
        assert str(caught.value).startswith(f"{path}:{line}: ") and reason in str(caught.value)


def test_a_script_checked_with_another_pack_is_refused():
    with pytest.raises(ScriptError, match="script is for pack 'cn-collection' but was given pack 'us-fdcpa-regf'"):
        load_script("cn-early", rules=RuleEngine.from_pack("us-fdcpa-regf"))


def test_missing_or_unreadable_files_are_script_errors(tmp_path: Path):
    with pytest.raises(ScriptError, match="no such script; bundled scripts: cn-early"):
        load_script("cn-nowhere")
    with pytest.raises(ScriptError, match="cannot read"):
        load_script(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00id")
    with pytest.raises(ScriptError, match="not UTF-8"):
        load_script(binary)


# ---- filling ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "language", "expected"), [
    ("amount", Decimal("3200"), "zh", "3200元"),
    ("amount", "1200.5", "zh", "1200.50元"),
    ("amount", 2000, "en", "$2,000"),
    ("amount", Decimal("3260.504"), "en", "$3,260.50"),
    ("due_date", date(2026, 4, 20), "zh", "2026年4月20日"),
    ("date", "2026-05-22", "en", "May 22, 2026"),
    ("date", datetime(2026, 5, 22, 9, 0), "zh", "2026年5月22日"),
    ("callback_time", datetime.fromisoformat("2026-05-19T15:30+08:00"), "zh", "5月19日下午3点30分"),
    ("callback_time", datetime.fromisoformat("2026-05-19T08:00+08:00"), "zh", "5月19日上午8点"),
    ("callback_time", datetime.fromisoformat("2026-05-19T19:00+08:00"), "zh", "5月19日晚上7点"),
    ("callback_time", datetime.fromisoformat("2026-05-19T08:00-04:00"), "en", "Tuesday, May 19 at 8:00 AM"),
    ("name", "  李\u202e娜\x00\n ", "zh", "李娜"),
    ("name", "Jordan\tLee", "en", "Jordan Lee"),
    ("company", "<speak>Acme</speak> {lender}", "en", "speakAcme/speak lender"),
    ("agent_id", "A-017", "zh", "A-017"),
])
def test_values_are_validated_and_normalised(key: str, value: object, language: str, expected: str):
    assert format_value(key, value, language) == expected


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("amount", Decimal("-5"), "more than 0"), ("amount", "NaN", "more than 0"), ("amount", True, "must be a number"),
    ("amount", "lots", "not a number"), ("amount", 10**9, "less than"), ("due_date", "20/04/2026", "ISO date"),
    ("date", date(1999, 1, 1), "between 2000 and 2100"), ("callback_time", datetime(2026, 5, 19, 9), "time zone"),
    ("name", "\x00\u200b", "empty"), ("name", "张" * 33, "longer than 32"), ("lender", 42, "must be text"),
    ("agent_id", "A1; DROP", "agent_id must be"), ("nickname", "x", "unknown placeholder"),
])
def test_bad_values_are_refused_without_echoing_them(key: str, value: object, reason: str):
    with pytest.raises(ScriptFillError, match=re.escape(reason)) as caught:
        format_value(key, value, "zh")
    assert str(value) not in str(caught.value) or str(value) in ("True", "42")


def test_fill_refuses_unknown_lines_and_missing_values():
    script = load_script("cn-early")
    with pytest.raises(ScriptFillError, match="has no line 'farewell'"):
        script.fill("farewell", SAMPLES["zh"])
    with pytest.raises(ScriptFillError, match=re.escape("no value for {name}")):
        script.fill("ask_name", {})


@pytest.mark.parametrize(("script_name", "line_id", "values", "rule"), [
    ("cn-early", "ask_name", {"name": "老赖"}, "cn.insult.personal"),
    ("cn-early", "opening", {"company": "市中级法院执行局", "lender": "示例银行", "agent_id": "A017"},
     "cn.impersonation.authority"),
    ("cn-early", "opening", {"company": "示例信息服务有限公司", "lender": "示例小额贷款公司", "agent_id": "A017"},
     "cn.disclosure.before_verification"),
    ("cn-early", "third_party_callback", {"name": "张伟欠款三千元"}, "cn.disclosure"),
    ("en-reminder", "ask_name", {"name": "Deadbeat Dan"}, "us.insult.personal"),
    ("en-reminder", "opening", {"company": "County Sheriff Office", "agent_id": "A017"}, "us.impersonation.authority"),
])
def test_a_value_cannot_inject_a_prohibited_phrase(script_name: str, line_id: str, values: dict, rule: str):
    with pytest.raises(ScriptFillError, match=re.escape(f"breaks rule {rule}")) as caught:
        load_script(script_name).fill(line_id, values)
    assert all(str(v) not in str(caught.value) for v in values.values() if v not in ("A017", "示例银行"))


EARLY = load_script("cn-early")


@given(st.text(max_size=60))
def test_filling_any_name_gives_a_clean_lawful_line_or_a_fill_error(name: str):
    script = EARLY
    try:
        text = script.fill("ask_name", {"name": name})
    except ScriptFillError:
        return
    assert not any(c in text for c in "{}<>\x00\n\u202e")
    assert flags(script.engine, text, CallState(verified=False)) == []


# ---- the CLI ----------------------------------------------------------------------------------------------------

def test_scripts_lint_checks_all_bundled_scripts_by_default():
    result = CliRunner().invoke(main, ["scripts", "lint"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(BUNDLED)
    assert "cn-late.yaml: ok (30 lines, zh, pack cn-collection, 61–∞ days overdue)" in result.stdout


def test_scripts_lint_names_the_file_and_line_of_a_bad_script(tmp_path: Path):
    path, number = with_line(tmp_path, "cn-early", "opening", "你这个老赖，听好了，本次通话将录音。")
    result = CliRunner().invoke(main, ["scripts", "lint", "cn-early", str(path)])
    assert result.exit_code == 1
    assert "cn-early.yaml: ok" in result.stdout
    assert f"error: {path}:{number}: line opening breaks rule cn.insult.personal" in result.stderr
    assert "1 script(s) failed" in result.stderr
