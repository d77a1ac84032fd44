"""Twilio Media Streams: one supervised call per stream at /media/twilio."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from asr.codecs import encode
from voicebot.adapters.twilio_messages import (
    MAX_MESSAGE_BYTES,
    SAMPLE_RATE,
    TRACK_LEGS,
    ProtocolError,
    TwilioConnected,
    TwilioDtmf,
    TwilioMark,
    TwilioMedia,
    TwilioStart,
    TwilioStop,
    parse_message,
    serialize_clear,
    serialize_mark,
    serialize_media,
)
from voicebot.admission import CallRefused
from voicebot.bot import BotCall, BotSetupError, start_bot_call
from voicebot.call import Call, CallBoard, CallInfo, Engines, LanguageNotServed, call_language, detach
from voicebot.config import Config, ServeConfig
from voicebot.frames import Leg

log = logging.getLogger(__name__)

RELAYED_LEG: Leg = "agent"
"""In-path, the agent leg's audio reaches the customer through us, as `media` sent back on the stream."""
MODES = ("in-path", "tap")
MAX_BAD_MESSAGES = 50
PACKET_SAMPLES = SAMPLE_RATE // 50
WARN_TONE_HZ = 1000
WARN_TONE_MS = 300


def call_info(start: TwilioStart, *, mode: str, zones: tuple[str, ...]) -> CallInfo:
    """The call a stream carries; `customParameters` may set mode, agent_id, account_id, debtor_tz (comma-separated),
    language (zh or en; default the pack's) and verified (true when the debtor's identity was confirmed before the
    stream started)."""
    params = start.custom_parameters
    mode = params.get("mode", mode)
    if mode not in MODES:
        raise ProtocolError("custom parameter `mode` must be in-path or tap")
    verified = params.get("verified", "false").lower()
    if verified not in ("true", "false"):
        raise ProtocolError("custom parameter `verified` must be true or false")
    tz = tuple(z.strip() for z in params.get("debtor_tz", "").split(",") if z.strip())
    try:
        language = call_language(params.get("language"))
    except ValueError as e:
        raise ProtocolError(f"custom parameter `language`: {e}") from None
    return CallInfo(adapter="twilio", mode=mode, zones=tz or zones, agent_id=params.get("agent_id") or None,
                    account_id=params.get("account_id") or None, language=language, verified=verified == "true")


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

    warn_heard_by: Leg | None = "customer"
    """Who hears `warn`: the stream plays into the caller's side (the customer); the agent cannot be reached."""

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
        except LanguageNotServed as e:
            log.warning("twilio: refused a stream (%s)", e)
            self.end_reason = "language not served"
            self._close(WSCloseCode.POLICY_VIOLATION, b"call language not served here; see the server log")
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
