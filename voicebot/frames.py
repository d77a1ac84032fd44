"""Every frame a call's pipeline carries, grouped by how it is scheduled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from asr.codecs import Encoding
from compliance_rules.engine import Flag, TimedWord
from voicebot.nlu import Understanding

Leg = Literal["agent", "customer"]
LEGS: tuple[Leg, ...] = ("agent", "customer")
Action = Literal["alert", "warn", "mute", "unmute", "hangup"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """Base of all frames."""


# --- system frames: urgent, jump the leg's queue, never dropped ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemFrame(Frame):
    """A frame handled before any queued data."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ViolationFrame(SystemFrame):
    """The rule engine flagged an utterance (or a customer signal changed the call's state)."""

    flag: Flag
    final: bool
    detected_wall_s: float
    """time.monotonic() when the flag was raised."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionFrame(SystemFrame):
    """An action on the call, decided by the engine, the call clock or a supervisor."""

    action: Action
    leg: Leg | None
    actor: str
    """`engine`, `clock` or the signed-in user who pressed the button."""
    reason: str
    rule: str | None = None
    audio_end_s: float | None = None
    """Call time of the end of the audio that caused the action, when audio caused it."""
    detected_wall_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BargeInFrame(SystemFrame):
    """The customer started speaking while the bot was: stop the bot's audio now."""

    leg: Leg
    detected_wall_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorFrame(SystemFrame):
    """A stage failed; enforcement fails safe on it."""

    stage: str
    error: str
    fatal: bool = False


# --- data frames: the audio and what is heard in it --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioFrame(Frame):
    """One packet of a leg's audio as the adapter received it."""

    leg: Leg
    payload: bytes
    encoding: Encoding
    sample_rate: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFrame(Frame):
    """Decoded 16-bit PCM of one leg, stamped with its call time."""

    leg: Leg
    pcm: np.ndarray = field(repr=False)
    sample_rate: int
    start_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechFrame(AudioFrame):
    """Audio the VAD gate let through."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechEndFrame(Frame):
    """The leg's speaker paused: the recognizer should finalise the utterance."""

    leg: Leg


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechPauseFrame(Frame):
    """The leg's speaker paused briefly: the recognizer settles what was said; the turn may or may not be over."""

    leg: Leg


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptFrame(Frame):
    """A partial or final recognition result of one leg, in call time."""

    leg: Leg
    text: str
    final: bool
    start_s: float | None
    end_s: float | None
    words: tuple[TimedWord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentFrame(Frame):
    """What the NLU understood of a customer's final transcript."""

    leg: Leg
    understanding: Understanding


@dataclass(frozen=True, slots=True, kw_only=True)
class BotSayFrame(Frame):
    """A line of the bot's script, filled in, for the bot to say."""

    line_id: str
    text: str
    end_call: bool = False
    transfer: bool = False


# --- control frames: kept in order ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfFrame(Frame):
    """A key pressed on a leg (RFC 4733, Twilio `dtmf`, AudioSocket 0x03)."""

    leg: Leg
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EndFrame(Frame):
    """The leg's audio ended; stages flush and finish."""

    reason: str
