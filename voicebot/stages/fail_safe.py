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
            for action in fail_safe_actions(frame):
                await self.push(action)


def fail_safe_actions(error: ErrorFrame) -> list[ActionFrame]:
    """What a fatal error calls for: alert the supervisor, then hang up."""
    reason = f"supervision failed in {error.stage} ({error.error})"
    return [ActionFrame(action=action, leg=None, actor="fail-safe", reason=reason) for action in ("alert", "hangup")]
