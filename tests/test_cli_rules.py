import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from voicebot.audit import AuditLog
from voicebot.cli import main


def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_rules_check_prints_one_object_per_line_in_order():
    lines = ["明天法院就来抓你坐牢", "依法向法院提起诉讼", "", "警惕冒充公安的诈骗电话"]
    code, out, _ = run("rules", "check", "--pack", "cn-collection", "--jsonl", "--rules-only",
                       stdin="\n".join(lines) + "\n")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == lines
    assert records[0]["flags"][0] == {"rule": "cn.legal.false_threat", "category": "false_legal_threat",
                                      "severity": "critical", "action": "end_call", "span": [0, 7],
                                      "source": "rule", "score": None, "model": None}
    assert [r["flags"] for r in records[1:]] == [[], [], []]


def test_rules_check_adds_model_flags_for_wording_no_rule_lists():
    lines = ["你女儿在实验小学三年级二班吧，每天下午四点半放学", "我们是受银行委托的催收公司，请您按时还款"]
    code, out, _ = run("rules", "check", stdin="\n".join(lines) + "\n")
    assert code == 0
    threat, lawful = (json.loads(line) for line in out.splitlines())
    assert [(f["source"], f["category"]) for f in threat["flags"]] == [("model", "threat")]
    assert 0.5 < threat["flags"][0]["score"] <= 1 and threat["flags"][0]["model"].startswith("e5-head-")
    assert threat["flags"][0]["action"] in ("end_call", "alert")
    assert lawful["flags"] == []


def test_rules_check_customer_leg_gives_signals_not_violations():
    code, out, _ = run("rules", "check", "--leg", "customer", stdin="你们这帮骗子\n我要投诉\n")
    assert code == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["flags"] == []
    assert second["flags"][0]["category"] == "signal"


def test_rules_check_call_mode_tracks_state_across_lines():
    stdin = "agent: 请问是李娜女士本人吗\ncustomer: 我不是，我是她老公\nagent: 她的信用卡欠了五千块\n"
    code, out, _ = run("rules", "check", "--call", "--context", "unverified", stdin=stdin)
    assert code == 0
    last = json.loads(out.splitlines()[-1])
    assert {f["category"] for f in last["flags"]} == {"third_party_disclosure"}


def test_rules_lint_reports_the_line_of_a_bad_pack(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pack: x\nlanguage: zh\nwindow: {start: '08:00', end: '21:00', fallback_zones: [UTC]}\n"
                   "actions: {info: log, low: log, medium: alert, high: warn, critical: explode}\nrules: []\n")
    code, _, err = run("rules", "lint", str(bad))
    assert code == 1
    assert f"{bad}:4: actions.critical must be one of" in err
    code, out, _ = run("rules", "lint", "cn-collection")
    assert code == 0 and "ok" in out


def test_rules_gate_refuses_out_of_window_and_says_when(tmp_path: Path):
    code, out, _ = run("rules", "gate", "--zone", "Asia/Shanghai", "--at", "2026-11-23T21:30:00+08:00")
    assert code == 3
    decision = json.loads(out)
    assert not decision["allowed"]
    assert decision["next_allowed"] == "2026-11-24T08:00:00+08:00"
    attempts = tmp_path / "attempts.jsonl"
    attempts.write_text("".join(json.dumps({"at": f"2026-11-23T0{h}:00:00+00:00"}) + "\n" for h in (1, 2, 3)))
    code, out, _ = run("rules", "gate", "--zone", "Asia/Shanghai", "--at", "2026-11-23T12:00:00+08:00",
                       "--attempts", str(attempts))
    assert code == 3 and "cadence" in json.loads(out)["reasons"][0]
    code, out, _ = run("rules", "gate", "--zone", "Asia/Shanghai", "--at", "2026-11-23T10:00:00+08:00")
    assert code == 0 and json.loads(out)["allowed"]


def test_audit_verify_and_export(tmp_path: Path):
    db = tmp_path / "audit.db"
    with AuditLog.open(db) as log:
        for i in range(5):
            log.append("flag", {"rule": "cn.threat.violence", "n": i}, call_id="c1", actor="engine")
    code, out, _ = run("audit", "verify", "--db", str(db))
    assert code == 0 and "5 records" in out
    code, out, _ = run("audit", "export", "--db", str(db), "--format", "jsonl")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3, 4, 5]
    code, out, _ = run("audit", "export", "--db", str(db), "--format", "csv")
    assert out.splitlines()[0].startswith("seq,at,kind")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE audit SET data = '{\"rule\":\"nothing\"}' WHERE seq = 3")
    code, _, err = run("audit", "verify", "--db", str(db))
    assert code == 4
    assert "record 3" in err
