"""Blind sets kept out of training, and a studied one retired into it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compliance_rules.held_out import held_out_texts, read_calls, retire
from compliance_rules.semantic import clean
from compliance_rules.training import Example, LabelledDataError, read_examples

CALL = {"id": "zh-01", "language": "zh", "lines": [
    {"leg": "agent", "state": "unverified", "label": "ok", "text": "您好，请问是王强先生吗？"},
    {"leg": "customer", "text": "我是他老婆，他上班去了。"},
    {"leg": "agent", "state": "third_party", "label": "third_party_disclosure", "text": "他欠了八千，让他还。"},
    {"leg": "customer", "text": "行，我跟他说。"},
]}


def test_a_call_set_gives_its_agent_lines_as_examples_and_retires_them(tmp_path: Path) -> None:
    path = tmp_path / "calls9.jsonl"
    path.write_text(json.dumps(CALL, ensure_ascii=False) + "\n", encoding="utf-8")
    examples = read_calls(path)
    assert examples == [Example("您好，请问是王强先生吗？", "ok", "unverified"),
                        Example("他欠了八千，让他还。", "third_party_disclosure", "third_party")]
    assert held_out_texts([path]) == {clean(e.text) for e in examples}, "agent lines are held out, not replies"

    written = retire(path, tmp_path)
    assert written.name == "retired_calls9.tsv" and read_examples(written) == examples
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls9.jsonl", "retired_calls9.tsv"], "no reply file"


def test_a_malformed_call_set_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text('{"id": "x", "lines": [{"leg": "agent", "text": "no state"}]}\n', encoding="utf-8")
    with pytest.raises(LabelledDataError, match=r"calls\.jsonl:1"):
        read_calls(path)
