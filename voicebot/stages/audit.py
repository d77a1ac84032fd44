"""Audit: flags, actions and errors are committed to the audit log before anything acts on them."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from concurrent.futures import Executor

from recordings.store import RecordingStore
from voicebot.audit import AuditLog
from voicebot.frames import ActionFrame, ErrorFrame, Frame, ViolationFrame
from voicebot.pipeline import Processor
from voicebot.stages.fail_safe import fail_safe_actions

Seal = Callable[[str], str]
"""Turns an utterance's words into what the audit log may keep of them."""
MATCHED = "audit_matched"
"""The purpose a flag's matched words are sealed under."""


class Audit(Processor):
    """Writes ViolationFrame, ActionFrame and ErrorFrame to the log, then passes them on unchanged.

    When the log cannot be written (a full disk, an I/O error, a damaged log), the call must not go on unaudited:
    the frame still goes on (a hang-up is still carried out, a flag still shown), then, once, a fatal ErrorFrame, an
    alert and a hang-up go straight to enforcement, unaudited. Later frames of the leg are not tried again."""

    def __init__(self, log: AuditLog, call_id: str, executor: Executor, *, mode: str, seal: Seal) -> None:
        super().__init__()
        self.log = log
        self.call_id = call_id
        self.executor = executor
        self.mode = mode
        self.seal = seal
        self.failed = False

    async def process(self, frame: Frame) -> None:
        """Append the record, wait until it is on disk, then push the frame; fail safe if it cannot be written."""
        record = audit_entry(frame, self.mode, self.seal)
        if record is not None and not self.failed:
            kind, data, actor = record
            append = lambda: self.log.append(kind, data, call_id=self.call_id, actor=actor)  # noqa: E731
            try:
                await asyncio.get_running_loop().run_in_executor(self.executor, append)
            except Exception as e:  # whatever stops the log, the call fails safe
                self.failed = True
                await self.push(frame)
                await self._fail_safe(f"the audit log cannot be written ({type(e).__name__})")
                return
        await self.push(frame)

    async def _fail_safe(self, reason: str) -> None:
        error = ErrorFrame(stage="audit", error=reason, fatal=True)
        for frame in (error, *fail_safe_actions(error)):
            await self.push(frame)


def sealer(store: RecordingStore, call_id: str) -> Seal:
    """How a call's audit records seal the words a flag matched: with the recordings' key, bound to the call, as
    base64 (read back with `opened_words`)."""
    return lambda text: base64.b64encode(store.seal_text(MATCHED, call_id, text)).decode() if text else ""


def opened_words(store: RecordingStore, call_id: str, sealed: str) -> str:
    """The words a flag's audit record sealed; RecordingTamperedError if they were altered or moved."""
    return store.open_text(MATCHED, call_id, base64.b64decode(sealed)) if sealed else ""


def audit_entry(frame: Frame, mode: str, seal: Seal) -> tuple[str, dict, str] | None:
    """The (kind, data, actor) the audit log keeps for a frame, if it keeps one; a flag's matched words sealed."""
    if isinstance(frame, ViolationFrame):
        f = frame.flag
        data = {"rule": f.rule, "category": f.category, "severity": f.severity, "leg": f.leg,
                "matched": seal(f.matched),
                "start_s": f.start_s, "end_s": f.end_s, "final": frame.final, "sets": f.sets, "source": f.source}
        if f.source == "model":
            data.update(score=f.score, model=f.model)
        return "flag", data, "engine"
    if isinstance(frame, ActionFrame):
        data = {"action": frame.action, "leg": frame.leg, "rule": frame.rule, "reason": frame.reason,
                "mode": mode, "by": "adapter" if mode == "in-path" else "pbx"}
        return "action", data, frame.actor
    if isinstance(frame, ErrorFrame):
        return "error", {"stage": frame.stage, "error": frame.error, "fatal": frame.fatal}, "pipeline"
    return None
