"""Publish: what the call hears and does, as JSON-ready events for the console and `voicebot monitor`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from voicebot.frames import ActionFrame, BargeInFrame, BotSayFrame, ErrorFrame, Frame, TranscriptFrame, ViolationFrame
from voicebot.pipeline import Processor

Event = dict[str, Any]


class Publish(Processor):
    """Turns transcripts, violations, actions and errors into events; frames pass on unchanged."""

    def __init__(self, sink: Callable[[Event], None], audio_wall_s: Callable[[float], float]) -> None:
        super().__init__()
        self.sink = sink
        self.audio_wall_s = audio_wall_s
        """Maps a call time to the time.monotonic() at which that audio reached us."""

    async def process(self, frame: Frame) -> None:
        """Publish the frame's event, if it has one, then pass it on."""
        event = frame_event(frame)
        if event is not None:
            audio_s = event.get("audio_s")
            if audio_s is not None:
                event["delay_ms"] = round((time.monotonic() - self.audio_wall_s(audio_s)) * 1000, 1)
            self.sink(event)
        await self.push(frame)


def frame_event(frame: Frame) -> Event | None:
    """The event for a frame: `partial`, `final`, `flag`, `action`, `bot_say`, `barge_in` or `error`."""
    if isinstance(frame, TranscriptFrame):
        return {"type": "final" if frame.final else "partial", "leg": frame.leg, "text": frame.text,
                "start_s": frame.start_s, "end_s": frame.end_s, "audio_s": frame.end_s}
    if isinstance(frame, ViolationFrame):
        f = frame.flag
        return {"type": "flag", "leg": f.leg, "rule": f.rule, "category": f.category, "severity": f.severity,
                "matched": f.matched, "span": list(f.span), "start_s": f.start_s, "end_s": f.end_s,
                "audio_s": f.end_s, "signal": f.category == "signal", "source": f.source, "score": f.score,
                "action": f.action}
    if isinstance(frame, ActionFrame):
        return {"type": "action", "action": frame.action, "leg": frame.leg, "actor": frame.actor,
                "rule": frame.rule, "reason": frame.reason, "audio_s": frame.audio_end_s}
    if isinstance(frame, BotSayFrame):
        return {"type": "bot_say", "line_id": frame.line_id, "end_call": frame.end_call, "transfer": frame.transfer}
    if isinstance(frame, BargeInFrame):
        return {"type": "barge_in", "leg": frame.leg}
    if isinstance(frame, ErrorFrame):
        return {"type": "error", "stage": frame.stage, "error": frame.error, "fatal": frame.fatal}
    return None
