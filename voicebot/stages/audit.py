"""Audit: flags, actions and errors are committed to the audit log before anything acts on them."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from voicebot.audit import AuditLog
from voicebot.frames import ActionFrame, ErrorFrame, Frame, ViolationFrame
from voicebot.pipeline import Processor


class Audit(Processor):
    """Writes ViolationFrame, ActionFrame and ErrorFrame to the log, then passes them on unchanged."""

    def __init__(self, log: AuditLog, call_id: str, executor: Executor, *, mode: str) -> None:
        super().__init__()
        self.log = log
        self.call_id = call_id
        self.executor = executor
        self.mode = mode

    async def process(self, frame: Frame) -> None:
        """Append the record, wait until it is on disk, then push the frame."""
        record = audit_entry(frame, self.mode)
        if record is not None:
            kind, data, actor = record
            append = lambda: self.log.append(kind, data, call_id=self.call_id, actor=actor)  # noqa: E731
            await asyncio.get_running_loop().run_in_executor(self.executor, append)
        await self.push(frame)


def audit_entry(frame: Frame, mode: str) -> tuple[str, dict, str] | None:
    """The (kind, data, actor) the audit log keeps for a frame, if it keeps one."""
    if isinstance(frame, ViolationFrame):
        f = frame.flag
        data = {"rule": f.rule, "category": f.category, "severity": f.severity, "leg": f.leg, "matched": f.matched,
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
