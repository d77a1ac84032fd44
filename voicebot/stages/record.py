"""Record: every decoded packet of the leg goes to the call's recording, before the VAD gate."""

from __future__ import annotations

from recordings.call_recording import CallRecording, RecordingError
from voicebot.frames import AudioFrame, ErrorFrame, Frame
from voicebot.pipeline import Processor


class Record(Processor):
    """Writes AudioFrames to the recording (buffered; flushed every second) and passes every frame on.

    A recording that cannot be written (a full disk) is a fatal ErrorFrame, once per call: FailSafe then alerts and
    hangs up, and nothing more is written to it."""

    def __init__(self, recording: CallRecording) -> None:
        super().__init__()
        self.recording = recording

    async def process(self, frame: Frame) -> None:
        """Write audio, then push; after the first failed write, push the fatal error too."""
        if isinstance(frame, AudioFrame) and self.recording.error is None:
            try:
                self.recording.write(frame.leg, frame.pcm, frame.sample_rate)
            except RecordingError as e:
                await self.push(frame)
                await self.push(ErrorFrame(stage="record", error=str(e), fatal=True))
                return
        await self.push(frame)
