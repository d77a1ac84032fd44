"""Record: every decoded packet of the leg goes to the call's recording, before the VAD gate."""

from __future__ import annotations

from recordings.store import CallRecording
from voicebot.frames import AudioFrame, Frame
from voicebot.pipeline import Processor


class Record(Processor):
    """Writes AudioFrames to the recording (buffered; flushed every second) and passes every frame on."""

    def __init__(self, recording: CallRecording) -> None:
        super().__init__()
        self.recording = recording

    async def process(self, frame: Frame) -> None:
        """Write audio, then push."""
        if isinstance(frame, AudioFrame):
            self.recording.write(frame.leg, frame.pcm, frame.sample_rate)
        await self.push(frame)
