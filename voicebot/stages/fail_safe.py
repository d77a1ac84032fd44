"""FailSafe: when a stage that enforcement needs has failed, alert and end the call."""

from __future__ import annotations

from voicebot.frames import ActionFrame, ErrorFrame, Frame
from voicebot.pipeline import Processor


class FailSafe(Processor):
    """A fatal ErrorFrame is followed by an alert and a hang-up, both audited downstream."""

    async def process(self, frame: Frame) -> None:
        """Pass the frame on; after a fatal error, push the fail-safe actions."""
        await self.push(frame)
        if isinstance(frame, ErrorFrame) and frame.fatal:
            reason = f"supervision failed in {frame.stage} ({frame.error})"
            await self.push(ActionFrame(action="alert", leg=None, actor="fail-safe", reason=reason))
            await self.push(ActionFrame(action="hangup", leg=None, actor="fail-safe", reason=reason))
