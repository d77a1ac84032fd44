"""Twilio Media Streams: the JSON WebSocket messages, and one supervised call per stream at /media/twilio."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import json
import logging
import re
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from asr.codecs import encode
from voicebot.admission import CallRefused
from voicebot.bot import BotCall, BotSetupError, start_bot_call
from voicebot.call import Call, CallBoard, CallInfo, Engines, detach
from voicebot.config import Config, ServeConfig
from voicebot.frames import Leg


class ProtocolError(ValueError):
    """A Media Streams message that is not JSON, or not of a shape Twilio documents; `event` names its kind if known."""

    event: str | None = None


log = logging.getLogger(__name__)

MEDIA_ENCODING = "audio/x-mulaw"
SAMPLE_RATE = 8000
TRACK_LEGS: dict[str, Leg] = {"inbound": "customer", "outbound": "agent"}
"""`inbound` is the caller (the customer leg); `outbound` is what Twilio plays to the caller (the agent leg)."""
RELAYED_LEG: Leg = "agent"
"""In-path, the agent leg's audio reaches the customer through us, as `media` sent back on the stream."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MODES = ("in-path", "tap")
MAX_BAD_MESSAGES = 50
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 256
PACKET_SAMPLES = SAMPLE_RATE // 50
WARN_TONE_HZ = 1000
WARN_TONE_MS = 300
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


def call_info(start: TwilioStart, *, mode: str, zones: tuple[str, ...]) -> CallInfo:
    """The call a stream carries; `customParameters` may set mode, agent_id, account_id, debtor_tz (comma-separated)."""
    params = start.custom_parameters
    mode = params.get("mode", mode)
    if mode not in MODES:
        raise ProtocolError("custom parameter `mode` must be in-path or tap")
    tz = tuple(z.strip() for z in params.get("debtor_tz", "").split(",") if z.strip())
    return CallInfo(adapter="twilio", mode=mode, zones=tz or zones, agent_id=params.get("agent_id") or None,
                    account_id=params.get("account_id") or None)


@cache
def warning_tone() -> tuple[bytes, ...]:
    """A short 1 kHz beep as 20 ms μ-law packets."""
    t = np.arange(SAMPLE_RATE * WARN_TONE_MS // 1000) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * WARN_TONE_HZ * t) * 8000).astype(np.int16)
    ulaw = encode(pcm, "ulaw")
    return tuple(ulaw[i : i + PACKET_SAMPLES] for i in range(0, len(ulaw), PACKET_SAMPLES))


# --- the endpoint ---------------------------------------------------------------------------------

SHUTDOWN_WAIT_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaEndpoint:
    """/media/twilio: what its calls need, as the serving process gave it, and the live streams to close on shutdown."""

    serve: ServeConfig
    config: Config
    board: CallBoard
    engines: Callable[[], Engines]
    """The process's engines, which exist only once the app has started."""
    streams: weakref.WeakSet[TwilioStream] = field(default_factory=weakref.WeakSet)

    async def media_stream(self, request: web.Request) -> web.StreamResponse:
        """The Media Streams WebSocket: one stream is one call."""
        check_token(request, self.serve.media_token)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        stream = TwilioStream(ws, self)
        self.streams.add(stream)
        try:
            await stream.run()
        finally:
            self.streams.discard(stream)
        return ws

    async def close_streams(self, app: web.Application) -> None:
        """On shutdown, end every live stream; each handler then ends its call."""
        await asyncio.gather(*(s.shutdown() for s in list(self.streams)), return_exceptions=True)


def setup(app: web.Application, *, serve: ServeConfig, config: Config, board: CallBoard,
          engines: Callable[[], Engines]) -> None:
    """Serve Media Streams at /media/twilio (token in the query, a bearer header, or the last path segment)."""
    endpoint = MediaEndpoint(serve=serve, config=config, board=board, engines=engines)
    app.router.add_get("/media/twilio", endpoint.media_stream)
    app.router.add_get("/media/twilio/{token}", endpoint.media_stream)
    app.on_shutdown.append(endpoint.close_streams)


def check_token(request: web.Request, expected: str) -> None:
    """Raise 401 unless the request carries the deployment's media token."""
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    given = request.query.get("token") or bearer or request.match_info.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("twilio: refused a media stream without a valid token")
        raise web.HTTPUnauthorized(text=json.dumps({"error": "missing or wrong media token; pass ?token=, "
                                                    "Authorization: Bearer, or /media/twilio/<token>"}),
                                   content_type="application/json", headers={"WWW-Authenticate": "Bearer"})


class TwilioStream:
    """One Media Streams WebSocket and its call; in-path it relays the agent track and carries out actions."""

    def __init__(self, ws: web.WebSocketResponse, endpoint: MediaEndpoint) -> None:
        self.ws = ws
        self.endpoint = endpoint
        self.call: Call | None = None
        self.bot: BotCall | None = None
        self.stream_sid = ""
        self.bad_messages = 0
        self.end_reason: str | None = None
        self.muted: set[Leg] = set()
        self._close_task: asyncio.Task[bool] | None = None
        self._marks = itertools.count(1)
        self.finished = asyncio.Event()

    async def run(self) -> None:
        """Read the stream until `stop`, a hang-up, too many malformed messages or a dropped socket; end the call."""
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._count_bad(ProtocolError("binary frame on a Media Stream"))
                if self.end_reason is not None:
                    break
        finally:
            # aiohttp may cancel the handler once the socket is gone: the call's end runs in a task of its own.
            await asyncio.shield(detach(self._finish(self.end_reason or "connection dropped")))

    async def _finish(self, reason: str) -> None:
        try:
            if self.bot is not None:
                await self.bot.end(reason)
            elif self.call is not None:
                await self.call.end(reason)
            self._close(WSCloseCode.OK, b"stream ended")
            if self._close_task is not None:
                with contextlib.suppress(Exception):
                    await self._close_task
        finally:
            self.finished.set()

    async def _on_text(self, text: str) -> None:
        try:
            msg = parse_message(text)
        except ProtocolError as e:
            if e.event == "start" and self.call is None:
                self._refuse(e)
            else:
                self._count_bad(e)
            return
        if isinstance(msg, TwilioStart):
            await self._start(msg)
        elif isinstance(msg, TwilioConnected):
            pass
        elif self.call is None:
            self._count_bad(ProtocolError("message before `start`"))
        elif isinstance(msg, TwilioMedia):
            await self._media(self.call, msg)
        elif isinstance(msg, TwilioDtmf):
            self.call.press(TRACK_LEGS[msg.track], msg.digit)
        elif isinstance(msg, TwilioStop):
            self.end_reason = "stream stopped"
        elif isinstance(msg, TwilioMark):
            log.debug("twilio call %s: mark played", self.call.call_id)

    async def _start(self, start: TwilioStart) -> None:
        if self.call is not None:
            self._count_bad(ProtocolError("second `start` on one stream"))
            return
        serve, board, engines = self.endpoint.serve, self.endpoint.board, self.endpoint.engines()
        try:
            info = call_info(start, mode=serve.mode, zones=serve.zones)
        except ProtocolError as e:
            self._refuse(e)
            return
        self.stream_sid = start.stream_sid
        try:
            engines.admission.check("twilio")  # before a bot loads its kit; Call.start takes the slot
            if start.custom_parameters.get("bot"):
                self.bot = await start_bot_call(self.endpoint.config, engines, board, info, start.custom_parameters,
                                                self)
                self.call = self.bot.call  # set first: a start that fails midway is still ended by _finish
                await self.bot.start()
            else:
                self.call = Call(info, engines, self, board)
                await self.call.start()
        except BotSetupError as e:
            log.warning("twilio: refused a bot stream (%s)", e)
            self.end_reason = "bot refused"
            self._close(WSCloseCode.POLICY_VIOLATION, b"bot call refused; see the server log")
            return
        except CallRefused:
            self.bot = self.call = None
            return self._at_capacity()
        log.info("twilio call %s: stream started, tracks %s, mode %s", info.call_id, ",".join(start.tracks), info.mode)

    async def _media(self, call: Call, media: TwilioMedia) -> None:
        leg = TRACK_LEGS[media.track]
        call.feed(leg, media.payload, "ulaw", SAMPLE_RATE)
        if call.info.mode == "in-path" and leg == RELAYED_LEG and leg not in self.muted:
            await self._send(serialize_media(self.stream_sid, media.payload))
        await call.pace(leg)

    def _at_capacity(self) -> None:
        """Close at once with 1013 Try Again Later (Call.start logged why), so the call can be routed elsewhere."""
        self.end_reason = "refused: at capacity"
        self._close(WSCloseCode.TRY_AGAIN_LATER, b"server at capacity; try another node")

    def _refuse(self, error: ProtocolError) -> None:
        """A stream whose `start` is unusable cannot be supervised: close it rather than let the call go unwatched."""
        log.warning("twilio: refused a stream whose start was unusable (%s)", type(error).__name__)
        self.end_reason = "start refused"
        self._close(WSCloseCode.POLICY_VIOLATION, b"unusable start message; see the server log")

    def _count_bad(self, error: ProtocolError) -> None:
        self.bad_messages += 1
        call_id = self.call.call_id if self.call is not None else "-"
        log.warning("twilio call %s: malformed message %d (%s)", call_id, self.bad_messages, type(error).__name__)
        if self.bad_messages >= MAX_BAD_MESSAGES and self.end_reason is None:
            self.end_reason = "protocol error: too many malformed messages"
            self._close(WSCloseCode.POLICY_VIOLATION, b"too many malformed Media Streams messages")

    async def _send(self, text: str) -> None:
        if self.ws.closed or self.end_reason is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(text)

    def _close(self, code: int, message: bytes) -> None:
        """Close the socket from a task of its own: closing waits for Twilio's reply."""
        if self._close_task is None and not self.ws.closed:
            self._close_task = asyncio.create_task(self.ws.close(code=code, message=message))

    async def send(self, pcm: np.ndarray) -> None:
        """Send 20 ms of the bot's 8 kHz audio to the caller."""
        await self._send(serialize_media(self.stream_sid, encode(pcm, "ulaw")))

    async def clear(self) -> None:
        """Barge-in: Twilio drops the audio it has queued."""
        await self._send(serialize_clear(self.stream_sid))

    async def hangup(self, reason: str) -> None:
        """Close the stream: Twilio ends a <Connect><Stream> call; the read loop then ends the call."""
        if self.end_reason is None:
            self.end_reason = f"hangup: {reason}"
            self._close(WSCloseCode.OK, b"call ended by supervision")

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Stop relaying the agent track (and drop what Twilio has queued); the customer leg is Twilio's own."""
        if leg != RELAYED_LEG or self.call is None:
            log.warning("twilio: cannot mute the %s leg; Twilio carries it", leg)
            return
        if muted and leg not in self.muted:
            await self._send(serialize_clear(self.stream_sid))
        (self.muted.add if muted else self.muted.discard)(leg)
        self.call.mark_muted(leg, muted)

    async def warn(self, leg: Leg | None) -> None:
        """Play a short beep to the caller, followed by a mark."""
        if self.call is None:
            return
        for packet in warning_tone():
            await self._send(serialize_media(self.stream_sid, packet))
        await self._send(serialize_mark(self.stream_sid, f"warn-{next(self._marks)}"))

    async def shutdown(self) -> None:
        """End the stream because the server is stopping, and wait until its call has ended."""
        if self.end_reason is None:
            self.end_reason = "server shutdown"
            self._close(WSCloseCode.GOING_AWAY, b"server shutdown")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_WAIT_S):
                await self.finished.wait()
