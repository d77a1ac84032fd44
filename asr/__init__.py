"""Audio codecs, voice activity detection and offline streaming speech recognition."""

from asr.codecs import Audio, AudioFormatError, decode, encode, read_audio_file, read_raw_file, resample
from asr.transcribe import LegTranscript, leg_events, transcribe_audio
from asr.vad import SpeechChunk, SpeechEnd, SpeechPause, VoiceGate
from asr.vosk_engine import AsrEvent, AsrStream, ModelMissingError, VoskEngine, Word

__all__ = [
    "AsrEvent",
    "AsrStream",
    "Audio",
    "AudioFormatError",
    "LegTranscript",
    "ModelMissingError",
    "SpeechChunk",
    "SpeechEnd",
    "SpeechPause",
    "VoiceGate",
    "VoskEngine",
    "Word",
    "decode",
    "encode",
    "leg_events",
    "read_audio_file",
    "read_raw_file",
    "resample",
    "transcribe_audio",
]
