"""Converse: the dialog manager answers what the customer said (or keyed) with the script's next lines."""

from __future__ import annotations

import time
from collections.abc import Callable

from voicebot.dialog import Dialog
from voicebot.dialog_data import BotLine
from voicebot.frames import BotSayFrame, DtmfFrame, Frame, IntentFrame, TranscriptFrame
from voicebot.pipeline import Processor


class Converse(Processor):
    """IntentFrame or DtmfFrame → BotSayFrames; the dialog itself knows nothing of frames."""

    def __init__(self, dialog: Dialog, on_state: Callable[[], None]) -> None:
        super().__init__()
        self.dialog = dialog
        self.on_state = on_state
        self.last_heard_mono = time.monotonic()
        """When the customer was last heard (any transcript): silence is measured from here."""
        self._digits = ""

    async def process(self, frame: Frame) -> None:
        """Feed the dialog; push the lines it answers with after the frame that caused them."""
        await self.push(frame)
        if isinstance(frame, TranscriptFrame) and frame.leg == "customer":
            self.last_heard_mono = time.monotonic()
        if self.dialog.done:
            return
        if isinstance(frame, IntentFrame):
            await self.say(self.dialog.hear(frame.understanding))
        elif isinstance(frame, DtmfFrame) and frame.leg == "customer" and frame.digit.isdigit():
            self._digits += frame.digit
            if len(self._digits) == 4:
                digits, self._digits = self._digits, ""
                await self.say(self.dialog.digits(digits))

    async def say(self, lines: list[BotLine]) -> None:
        """Tell the call the dialog's state, then push its lines to the speaker."""
        self.on_state()
        for line in lines:
            await self.push(BotSayFrame(line_id=line.line_id, text=line.text, end_call=line.end_call,
                                        transfer=line.transfer))
