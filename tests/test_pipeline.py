"""The pipeline and its stages, one at a time, on real frames."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from asr.codecs import encode, read_audio_file, resample
from compliance_rules.engine import CallMonitor, Flag, TimedWord
from voicebot.board import CallHistory
from voicebot.frames import (
    ActionFrame,
    AudioFrame,
    BargeInFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioFrame,
    SpeechPauseFrame,
    TranscriptFrame,
    ViolationFrame,
)
from voicebot.pipeline import Pipeline, Processor
from voicebot.stages.audit import Audit
from voicebot.stages.check_rules import CheckRules, action_for
from voicebot.stages.decode import Decode
from voicebot.stages.enforce import Enforce
from voicebot.stages.fail_safe import FailSafe
from voicebot.stages.publish import Publish
from voicebot.stages.vad_gate import VadGate


class Collect(Processor):
    """The end of a test pipeline: keeps what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process(self, frame: Frame) -> None:
        self.frames.append(frame)


async def run_stage(stage: Processor, frames: list[Frame]) -> list[Frame]:
    """Push frames through one stage and return what came out."""
    out = Collect()
    stage.link(out)
    for frame in frames:
        await stage.process(frame)
    return out.frames


class Recorder:
    """A CallControl that notes what it was asked to do."""

    warn_heard_by = "agent"

    def __init__(self) -> None:
        self.done: list[tuple] = []

    async def hangup(self, reason: str) -> None:
        self.done.append(("hangup", reason))

    async def mute(self, leg, muted: bool) -> None:
        self.done.append(("mute", leg, muted))

    async def warn(self, leg) -> None:
        self.done.append(("warn", leg))


async def test_decode_stamps_call_time_and_drops_bad_packets() -> None:
    pcm = np.arange(160, dtype=np.int16)
    frames = [
        InputAudioFrame(leg="agent", payload=encode(pcm, "ulaw"), encoding="ulaw", sample_rate=8000),
        InputAudioFrame(leg="agent", payload=b"\x01\x02\x03", encoding="pcm16", sample_rate=8000),
        InputAudioFrame(leg="agent", payload=pcm.tobytes(), encoding="pcm16", sample_rate=44100),
        InputAudioFrame(leg="agent", payload=pcm.tobytes(), encoding="pcm16", sample_rate=8000),
    ]
    decode = Decode()
    out = await run_stage(decode, frames)
    assert [type(f) for f in out] == [AudioFrame, AudioFrame]
    assert [f.start_s for f in out] == [0.0, 0.02]
    assert np.array_equal(out[1].pcm, pcm)
    assert decode.bad_packets == 2


async def test_check_rules_emits_transcript_violation_and_action(cn_rules) -> None:
    words = (TimedWord("今晚", 19.0, 19.4), TimedWord("带", 19.4, 19.6), TimedWord("几个人", 19.6, 20.2),
             TimedWord("上", 20.2, 20.4), TimedWord("你家", 20.4, 20.8))
    text = "今晚带几个人上你家"
    frame = TranscriptFrame(leg="agent", text=text, final=False, start_s=19.0, end_s=20.8, words=words)
    out = await run_stage(CheckRules(CallMonitor(cn_rules)), [frame, frame])
    assert out[0] is frame
    violation, action = out[1], out[2]
    assert isinstance(violation, ViolationFrame) and violation.flag.category == "gang"
    assert isinstance(action, ActionFrame) and action.action == "hangup" and action.actor == "engine"
    assert action.audio_end_s == violation.flag.end_s and action.audio_end_s is not None
    assert len(out) == 4, "the same hit in a repeated partial is flagged once"


async def test_one_warning_per_sentence_however_many_hits_it_has(cn_rules) -> None:
    partial = TranscriptFrame(leg="agent", text="你这个废物", final=False, start_s=1.0, end_s=2.0)
    final = TranscriptFrame(leg="agent", text="你这个废物，真是个蠢货", final=True, start_s=1.0, end_s=3.0)
    again = TranscriptFrame(leg="agent", text="你这个废物", final=True, start_s=4.0, end_s=5.0)
    out = await run_stage(CheckRules(CallMonitor(cn_rules)), [partial, final, again])
    flags = [f.flag.rule for f in out if isinstance(f, ViolationFrame)]
    warnings = [f.audio_end_s for f in out if isinstance(f, ActionFrame) and f.action == "warn"]
    assert flags == ["cn.insult.personal"] * 3, "each hit is still flagged and audited"
    assert warnings == [2.0, 5.0], "the sentence's second hit is not warned again; the next sentence is"


def test_action_for_follows_the_pack() -> None:
    flag = Flag(rule="r", category="signal", severity="info", action="log", leg="customer", span=(0, 1), matched="x")
    assert action_for(flag, 0.0) is None
    muted = action_for(Flag(rule="r", category="obscene", severity="high", action="mute", leg="agent", span=(0, 1),
                            matched="x"), 0.0)
    assert muted is not None and (muted.action, muted.leg) == ("mute", "agent")


async def test_fail_safe_ends_the_call_after_a_fatal_error() -> None:
    out = await run_stage(FailSafe(), [ErrorFrame(stage="agent", error="RuntimeError", fatal=True),
                                       ErrorFrame(stage="agent", error="Minor")])
    assert [getattr(f, "action", None) for f in out] == [None, "alert", "hangup", None]


async def test_audit_writes_before_enforce_acts(engines) -> None:
    control = Recorder()
    seen_on_disk: list[int] = []

    class Probe(Processor):
        async def process(self, frame: Frame) -> None:
            seen_on_disk.append(len(list(engines.audit.records())))
            await self.push(frame)

    stages = [Audit(engines.audit, "c1", engines.disk, mode="in-path", seal=str), Probe(), Enforce(control)]
    pipeline = Pipeline([*stages, Collect()], name="t")
    await pipeline.process(ActionFrame(action="hangup", leg="agent", actor="alice", reason="supervisor"))
    await pipeline.process(ActionFrame(action="mute", leg="agent", actor="engine", reason="obscene"))
    assert seen_on_disk == [1, 2]
    assert control.done == [("hangup", "supervisor"), ("mute", "agent", True)]
    records = list(engines.audit.records())
    assert [(r.kind, r.actor) for r in records] == [("action", "alice"), ("action", "engine")]


async def test_publish_reports_delay_from_the_audio() -> None:
    events: list[dict] = []
    frame = TranscriptFrame(leg="customer", text="你好", final=True, start_s=1.0, end_s=1.5)
    await run_stage(Publish(events.append, lambda t: 100.0 + t), [frame])
    assert events[0]["type"] == "final" and events[0]["audio_s"] == 1.5 and "delay_ms" in events[0]


async def test_system_frames_jump_queued_audio_and_errors_do_not_stop_the_leg() -> None:
    order: list[str] = []

    class Fragile(Processor):
        async def process(self, frame: Frame) -> None:
            order.append(type(frame).__name__)
            if isinstance(frame, AudioFrame) and frame.start_s == 0.0:
                raise RuntimeError("boom")
            await self.push(frame)

    pipeline = Pipeline([Fragile(), Collect()], name="t")
    audio = [AudioFrame(leg="agent", pcm=np.zeros(160, np.int16), sample_rate=8000, start_s=i * 0.02)
             for i in range(2)]
    for frame in audio:
        pipeline.queue(frame)
    pipeline.queue(ActionFrame(action="warn", leg="agent", actor="bob", reason="x"))
    pipeline.queue(EndFrame(reason="done"))
    await asyncio.wait_for(pipeline.run(), 5)
    assert order[0] == "ActionFrame"
    assert order[1:] == ["AudioFrame", "ErrorFrame", "AudioFrame", "EndFrame"]


@pytest.mark.parametrize("mode", ["in-path", "tap"])
async def test_audit_entry_names_who_acts(engines, mode: str) -> None:
    await run_stage(Audit(engines.audit, "c2", engines.disk, mode=mode, seal=str),
                    [ActionFrame(action="hangup", leg=None, actor="engine", reason="threat")])
    (record,) = engines.audit.records()
    assert record.data["by"] == ("adapter" if mode == "in-path" else "pbx")


async def test_speech_resuming_after_a_pause_the_bot_answered_is_a_barge_in(shared) -> None:
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "c04.wav")
    speech = resample(audio.channels[0], audio.sample_rate, 8000)
    loud = np.flatnonzero(np.abs(speech) > 1000)
    speech = speech[loud[0] : loud[-1]]  # without the file's own lead and tail silence
    pcm = np.concatenate([speech, np.zeros(3200, np.int16), speech, np.zeros(8000, np.int16)])  # a 0.4 s pause
    answering = []
    gate, out = VadGate("customer", bot_speaking=lambda: bool(answering), pause_ms=240), Collect()
    gate.link(out)
    for i in range(0, len(pcm) - 159, 160):
        await gate.process(AudioFrame(leg="customer", pcm=pcm[i : i + 160], sample_rate=8000, start_s=i / 8000))
        if not answering and any(isinstance(f, SpeechPauseFrame) for f in out.frames):
            answering.append(True)  # the bot answers at the first pause
    kinds = [type(f) for f in out.frames]
    assert SpeechPauseFrame in kinds and BargeInFrame in kinds
    assert kinds.index(BargeInFrame) > kinds.index(SpeechPauseFrame)


def test_a_long_calls_history_keeps_every_final_flag_and_action_and_each_legs_latest_partial() -> None:
    history = CallHistory()
    for i in range(3000):
        for leg in ("agent", "customer"):
            history.append({"type": "partial", "leg": leg, "text": f"{leg} {i} partial"})
            if i % 3 == 2:
                history.append({"type": "final", "leg": leg, "text": f"{leg} {i}"})
        if i % 100 == 0:
            history.append({"type": "flag", "leg": "agent", "rule": f"r{i}"})
    events = list(history)
    assert sum(e["type"] == "final" for e in events) == 2000 and sum(e["type"] == "flag" for e in events) == 30
    partials = [e for e in events if e["type"] == "partial"]
    assert partials == [], "each leg's last partial was settled by its final"
    history.append({"type": "partial", "leg": "agent", "text": "still talking"})
    assert list(history)[-1]["text"] == "still talking" and len(list(history)) == len(events) + 1
