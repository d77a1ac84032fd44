"""Twilio Media Streams' JSON WebSocket messages: parsed and checked from Twilio, serialized to it."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from voicebot.frames import Leg


class ProtocolError(ValueError):
    """A Media Streams message that is not JSON, or not of a shape Twilio documents; `event` names its kind if known."""

    event: str | None = None


MEDIA_ENCODING = "audio/x-mulaw"
SAMPLE_RATE = 8000
TRACK_LEGS: dict[str, Leg] = {"inbound": "customer", "outbound": "agent"}
"""`inbound` is the caller (the customer leg); `outbound` is what Twilio plays to the caller (the agent leg)."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 256
_DIGITS = re.compile(r"[0-9]{1,15}", re.ASCII)


# --- messages from Twilio -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioConnected:
    """The first message of a stream."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioStart:
    """The stream's metadata: which call, which tracks, and the TwiML <Parameter> values."""

    stream_sid: str
    call_sid: str
    account_sid: str | None
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioMedia:
    """20 ms of μ-law 8 kHz audio of one track."""

    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioDtmf:
    """A key pressed on a track."""

    stream_sid: str
    track: str
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioMark:
    """Twilio has played (or cleared) the audio we sent before a mark of this name."""

    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioStop:
    """The stream has ended (the call hung up, or the stream was stopped)."""

    stream_sid: str
    call_sid: str | None


TwilioMessage = TwilioConnected | TwilioStart | TwilioMedia | TwilioDtmf | TwilioMark | TwilioStop


def parse_message(text: str | bytes) -> TwilioMessage:
    """One Media Streams text frame as a typed message; raises ProtocolError for anything malformed."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("message is not a JSON object")
    event = data.get("event")
    parse = _PARSERS.get(event) if isinstance(event, str) else None
    if parse is None:
        raise ProtocolError("unknown or missing `event`; expected connected, start, media, dtmf, mark or stop")
    try:
        if "sequenceNumber" in data:
            _number(data, "sequenceNumber")
        return parse(data)
    except ProtocolError as e:
        e.event = event
        raise


def _parse_connected(data: dict[str, Any]) -> TwilioConnected:
    return TwilioConnected(protocol=_text(data, "protocol"), version=_text(data, "version"))


def _parse_start(data: dict[str, Any]) -> TwilioStart:
    start = _object(data, "start")
    tracks = start.get("tracks")
    if (not isinstance(tracks, list) or not tracks or not all(_one_of(t, TRACK_LEGS) for t in tracks)
            or len(set(tracks)) != len(tracks)):
        raise ProtocolError("`start.tracks` must list `inbound` and/or `outbound`, each once")
    _check_media_format(_object(start, "mediaFormat"))
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) and len(v) <= MAX_TEXT_CHARS
                                               for v in params.values()):
        raise ProtocolError("`start.customParameters` must map names to strings")
    return TwilioStart(stream_sid=_text(start, "streamSid") if "streamSid" in start else _text(data, "streamSid"),
                       call_sid=_text(start, "callSid"),
                       account_sid=_text(start, "accountSid") if "accountSid" in start else None,
                       tracks=tuple(tracks), custom_parameters=dict(params))


def _check_media_format(fmt: dict[str, Any]) -> None:
    encoding, rate, channels = fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels")
    rate = int(rate) if isinstance(rate, str) and _DIGITS.fullmatch(rate) else rate
    channels = int(channels) if isinstance(channels, str) and _DIGITS.fullmatch(channels) else channels
    if encoding != MEDIA_ENCODING or rate != SAMPLE_RATE or channels != 1 or isinstance(rate, bool):
        shown = [str(v)[:32] for v in (encoding, rate, channels)]
        raise ProtocolError(f"media format {shown[0]} at {shown[1]} Hz with {shown[2]} channel(s) is not supported; "
                            f"Media Streams must send {MEDIA_ENCODING} at {SAMPLE_RATE} Hz, 1 channel")


def _parse_media(data: dict[str, Any]) -> TwilioMedia:
    media = _object(data, "media")
    track = media.get("track")
    if not _one_of(track, TRACK_LEGS):
        raise ProtocolError("`media.track` must be `inbound` or `outbound`")
    payload = _text(media, "payload", max_chars=MAX_MESSAGE_BYTES)
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("`media.payload` is not valid base64") from None
    if not audio:
        raise ProtocolError("`media.payload` is empty")
    return TwilioMedia(stream_sid=_text(data, "streamSid"), track=track, chunk=_number(media, "chunk"),
                       timestamp_ms=_number(media, "timestamp"), payload=audio)


def _parse_dtmf(data: dict[str, Any]) -> TwilioDtmf:
    dtmf = _object(data, "dtmf")
    track = str(dtmf.get("track", "inbound_track")).removesuffix("_track")
    digit = dtmf.get("digit")
    if not _one_of(track, TRACK_LEGS) or not _one_of(digit, DTMF_DIGITS):
        raise ProtocolError("`dtmf` needs a track (inbound_track/outbound_track) and one digit 0-9, *, #, A-D")
    return TwilioDtmf(stream_sid=_text(data, "streamSid"), track=track, digit=digit)


def _parse_mark(data: dict[str, Any]) -> TwilioMark:
    return TwilioMark(stream_sid=_text(data, "streamSid"), name=_text(_object(data, "mark"), "name"))


def _parse_stop(data: dict[str, Any]) -> TwilioStop:
    stop = data.get("stop", {})
    call_sid = stop.get("callSid") if isinstance(stop, dict) else None
    return TwilioStop(stream_sid=_text(data, "streamSid"), call_sid=call_sid if isinstance(call_sid, str) else None)


_PARSERS = {"connected": _parse_connected, "start": _parse_start, "media": _parse_media, "dtmf": _parse_dtmf,
            "mark": _parse_mark, "stop": _parse_stop}


def _one_of(value: object, allowed: Collection[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"`{key}` is missing or not an object")
    return value


def _text(data: dict[str, Any], key: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise ProtocolError(f"`{key}` is missing, empty, too long or not a string")
    return value


def _number(data: dict[str, Any], key: str) -> int:
    """Twilio sends counters as decimal strings; plain integers are accepted too."""
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise ProtocolError(f"`{key}` is missing or not a non-negative number")


# --- messages to Twilio ---------------------------------------------------------------------------


def serialize_media(stream_sid: str, payload: bytes) -> str:
    """Audio for Twilio to play to the caller: μ-law 8 kHz bytes, base64 in a `media` message."""
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(payload).decode("ascii")}})


def serialize_mark(stream_sid: str, name: str) -> str:
    """A mark Twilio echoes back once the audio sent before it has played."""
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def serialize_clear(stream_sid: str) -> str:
    """Drop the audio Twilio has queued for the caller (barge-in, mute)."""
    return json.dumps({"event": "clear", "streamSid": stream_sid})
