"""A whole call through the live path: file replay → recognizer → rules → audit → enforcement → events."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from voicebot.adapters.replay import load_call_audio, replay_call
from voicebot.call import CallBoard, CallInfo
from voicebot.stages.audit import opened_words

pytestmark = pytest.mark.model

VOICEBOT = str(Path(sys.executable).parent / "voicebot")
SHANGHAI_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


async def test_threat_hangs_up_the_replayed_call(engines, threat_call: Path) -> None:
    board = CallBoard()
    events = board.listen(maxsize=0)
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=SHANGHAI_NOON, speed=3)
    call = await replay_call(load_call_audio([threat_call]), engines, board, info)
    seen = [events.get_nowait() for _ in range(events.qsize())]
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "call_start" and kinds[-1] == "call_end"
    gang = next(e for e in seen if e["type"] == "flag" and e["category"] == "gang")
    assert gang["leg"] == "agent" and 19.0 < gang["end_s"] < 23.0
    hangup = next(e for e in seen if e["type"] == "action" and e["action"] == "hangup")
    assert hangup["actor"] == "engine" and hangup["audio_s"] == gang["end_s"] and hangup["delay_ms"] >= 0
    assert seen[-1]["duration_s"] <= 26.9, "faster than real time, the replay may end before the hang-up lands"
    assert any(e["type"] == "final" and e["leg"] == "customer" for e in seen)
    assert not board.calls

    records = list(engines.audit.records())
    assert records[0].kind == "call_start" and records[-1].kind == "call_end"
    assert {r.call_id for r in records} == {call.call_id}
    flag_seq = next(r.seq for r in records if r.kind == "flag" and r.data["category"] == "gang")
    matched = next(r.data["matched"] for r in records if r.seq == flag_seq)
    assert gang["matched"] and gang["matched"] not in matched, "the audit log keeps the words sealed"
    assert opened_words(engines.recordings, call.call_id, matched) == gang["matched"]
    action = next(r for r in records if r.kind == "action" and r.data["action"] == "hangup")
    assert action.seq > flag_seq and action.actor == "engine"
    assert engines.audit.verify().ok

    opened = engines.recordings.open_audio(call.call_id)
    assert opened.complete and opened.header.sample_rate == 16000 and 19.0 < opened.duration_s <= 26.9
    assert opened.frames.shape[1] == 2 and all(np.abs(opened.frames[:, ch]).max() > 3000 for ch in (0, 1))
    stored = engines.recordings.get(call.call_id)
    assert stored.status == "complete" and "gang" in {f["category"] for f in stored.flags}


async def test_call_outside_hours_is_ended_by_the_clock(engines, threat_call: Path) -> None:
    late = datetime(2026, 11, 23, 21, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    board = CallBoard()
    events = board.listen(maxsize=0)
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=late, speed=4)
    await replay_call(load_call_audio([threat_call]), engines, board, info)
    seen = [events.get_nowait() for _ in range(events.qsize())]
    flag = next(e for e in seen if e["type"] == "flag")
    assert flag["rule"] == "window.outside_hours"
    actions = [(e["action"], e["actor"]) for e in seen if e["type"] == "action"]
    assert actions == [("warn", "clock"), ("hangup", "clock")]
    alerts = [(e["kind"], e["severity"]) for e in seen if e["type"] == "alert"]
    assert alerts == [("out_of_hours", "high"), ("out_of_hours", "critical")], "one alert each, not one per flag too"
    assert seen[-1]["type"] == "call_end" and seen[-1]["duration_s"] < 5


async def test_supervisor_action_is_audited_with_its_actor(engines, shared: Path) -> None:
    board = CallBoard()
    events = board.listen(maxsize=0)
    audio = load_call_audio([shared / "audio" / "tts-cmn" / "calls" / "call_ptp.wav"])
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=SHANGHAI_NOON, speed=4)

    async def supervise() -> None:
        while True:
            event = await events.get()
            if event["type"] == "final":
                call = board.calls[event["call_id"]]
                call.act("mute", actor="alice", reason="supervisor", leg="agent")
                call.act("hangup", actor="alice", reason="supervisor")
                return

    watcher = asyncio.create_task(supervise())
    call = await replay_call(audio, engines, board, info)
    await watcher
    actions = [(r.actor, r.data["action"]) for r in engines.audit.records() if r.kind == "action"]
    assert ("alice", "mute") in actions and ("alice", "hangup") in actions
    assert call.muted == {"agent"}
    assert call.ended_reason == "hangup: supervisor"


def test_monitor_prints_json_events(tmp_path: Path, threat_call: Path) -> None:
    out = subprocess.run(
        [VOICEBOT, "monitor", str(threat_call), "--speed", "8", "--db",
         str(tmp_path / "m.db"), "--start", "2026-11-23T10:00", "--tz", "Asia/Shanghai"],
        capture_output=True, text=True, timeout=240, check=True,
    )
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = {e["type"] for e in events}
    assert {"partial", "final", "flag", "action", "call_start", "call_end"} <= kinds
    for e in events:
        if e["type"] in ("partial", "final", "flag", "action") and e.get("audio_s") is not None:
            assert "delay_ms" in e
    assert any(e["type"] == "action" and e["action"] == "hangup" for e in events)
    assert "信不信" not in out.stderr, "transcripts never go to the log"


def test_monitor_refuses_a_mono_file_clearly(tmp_path: Path, shared: Path) -> None:
    out = subprocess.run(
        [VOICEBOT, "monitor", str(shared / "audio" / "tts-cmn" / "a11.wav"),
         "--db", str(tmp_path / "m.db")], capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1 and "two mono files" in out.stderr


async def test_model_flags_a_fee_demand_no_rule_lists_in_a_live_call(engines, shared: Path, tmp_path: Path) -> None:
    """The agent asks for 800 into his WeChat (Vosk writes it garbled): only the semantic model catches it."""
    import dataclasses

    import soundfile as sf

    from compliance_rules.detector import SemanticDetector

    folder = shared / "audio" / "tts-cmn"
    turns = [("agent", "b02"), ("customer", "c02"), ("agent", "a01"), ("customer", "c13"), ("agent", "a10")]
    pieces = []
    for leg, name in turns:
        mono, rate = sf.read(folder / f"{name}.wav", dtype="float32")
        stereo = np.zeros((len(mono) + rate // 2, 2), dtype="float32")
        stereo[: len(mono), 0 if leg == "agent" else 1] = mono
        pieces.append(stereo)
    sf.write(tmp_path / "fee.wav", np.concatenate(pieces), rate)
    engines = dataclasses.replace(engines, meaning=SemanticDetector.for_pack(engines.rules.pack))
    board = CallBoard()
    events = board.listen(maxsize=0)
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=SHANGHAI_NOON, speed=2)
    call = await replay_call(load_call_audio([tmp_path / "fee.wav"]), engines, board, info)
    seen = [events.get_nowait() for _ in range(events.qsize())]
    flag = next(e for e in seen if e["type"] == "flag" and e["category"] == "fee_demand")
    assert (flag["source"], flag["leg"], flag["rule"]) == ("model", "agent", "model.fee_demand")
    assert [e["rule"] for e in seen if e["type"] == "flag" and e["source"] == "rule" and not e["signal"]] == []
    action = next(e for e in seen if e["type"] == "action" and e["rule"] == "model.fee_demand")
    assert action["action"] in ("alert", "hangup") and "model e5-head-" in action["reason"]
    audited = next(r for r in engines.audit.records() if r.kind == "flag" and r.data["rule"] == "model.fee_demand")
    assert audited.call_id == call.call_id and audited.data["model"] == engines.meaning.version
    assert 0.5 <= audited.data["score"] <= 1 and engines.audit.verify().ok
