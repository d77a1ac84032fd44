"""Asterisk AudioSocket: a bridge that supervises each call and, in-path, carries it (framing in audiosocket_frames)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import time
import uuid
from functools import cache

import numpy as np

from asr.codecs import resample
from voicebot.adapters.audiosocket_frames import (
    ACCEPTED_RATES,
    AudioSocketFrame,
    Kind,
    ProtocolError,
    parse_frames,
    serialize_frame,
)
from voicebot.admission import CallRefused
from voicebot.call import Call, CallBoard, CallInfo, Engines
from voicebot.config import ServeConfig
from voicebot.frames import Leg

log = logging.getLogger(__name__)

ERROR_CODE_PROTOCOL = b"\x02"
MAX_BAD_FRAMES = 50
FIRST_FRAME_TIMEOUT_S = 10.0
PACKET_S = 0.02
PLAYOUT_MAX_S = 1.0
"""Audio queued for a connection beyond this is dropped, oldest first: the bridge stays near real time."""
READ_BYTES = 65536
LINGER_S = 2.0
"""Once we have hung up, how long the peer's last frames are read and dropped while it closes: a socket closed with
its audio unread is reset, and the reset can discard the hang-up frame still on its way (Asterisk then takes an
error, not a hang-up, and its dialplan goes on)."""
OTHER_LEG: dict[Leg, Leg] = {"agent": "customer", "customer": "agent"}


def convert_audio(payload: bytes, from_rate: int, to_rate: int) -> bytes:
    """16-bit PCM bytes at another rate."""
    if from_rate == to_rate:
        return payload
    return resample(np.frombuffer(payload, dtype="<i2"), from_rate, to_rate).astype("<i2").tobytes()


@cache
def warning_tone(rate: int) -> bytes:
    """A short 1 kHz beep as 16-bit PCM."""
    t = np.arange(int(rate * 0.3)) / rate
    return (np.sin(2 * np.pi * 1000 * t) * 8000).astype("<i2").tobytes()


# --- connections and calls ------------------------------------------------------------------------


class Connection:
    """One AudioSocket TCP connection (one Asterisk channel): frames in, paced audio out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.rate: int | None = None
        self.bad_frames = 0
        self.leg: Leg | None = None
        self.ended = False
        """We have sent our last frame: what the peer still sends is dropped."""
        self._pending: collections.deque[AudioSocketFrame] = collections.deque()
        self._playout: collections.deque[tuple[bytes, int]] = collections.deque()
        self._queued = asyncio.Event()
        self._player = asyncio.create_task(self._play())

    async def next_frame(self) -> AudioSocketFrame | None:
        """The next frame, or None once the peer has closed; a fatal ProtocolError (or too many bad frames) raises."""
        while not self._pending:
            try:
                self._pending.extend(parse_frames(self.buffer))
            except ProtocolError as e:
                self.count_bad(e)
                continue
            if self._pending:
                break
            try:
                data = await self.reader.read(READ_BYTES)
            except ConnectionError:
                data = b""
            if not data:
                return None
            self.buffer += data
        return self._pending.popleft()

    def count_bad(self, error: ProtocolError) -> None:
        """Count a malformed frame; raise when it is fatal or one too many."""
        self.bad_frames += 1
        log.warning("audiosocket %s leg: malformed frame %d (fatal: %s)", self.leg, self.bad_frames, error.fatal)
        if error.fatal or self.bad_frames >= MAX_BAD_FRAMES:
            raise error

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        """Write one frame now (hang-up, error); nothing once the connection has ended."""
        if not self.ended and not self.writer.is_closing():
            self.writer.write(serialize_frame(kind, payload))

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue 16-bit PCM for paced playout, converted to the rate this channel speaks."""
        to_rate = self.rate or rate
        pcm = convert_audio(pcm, rate, to_rate)
        step = int(to_rate * PACKET_S) * 2
        self._playout.extend((pcm[i : i + step], to_rate) for i in range(0, len(pcm), step))
        while len(self._playout) * PACKET_S > PLAYOUT_MAX_S:
            self._playout.popleft()
        self._queued.set()

    def clear(self) -> None:
        """Drop queued audio."""
        self._playout.clear()

    async def _drop_rest(self) -> None:
        while await self.reader.read(READ_BYTES):
            pass

    async def _play(self) -> None:
        due = time.monotonic()
        while not self.writer.is_closing():
            if not self._playout:
                self._queued.clear()
                await self._queued.wait()
                due = max(due, time.monotonic())
                continue
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if self._playout:
                packet, rate = self._playout.popleft()
                self.send(ACCEPTED_RATES[rate], packet)
                due += len(packet) / 2 / rate

    def hang_up(self) -> None:
        """Drop queued audio, send the hang-up frame and end the connection."""
        self.clear()
        self.send(Kind.HANGUP)
        self.end()

    def end(self) -> None:
        """Send nothing more: end our side of the stream after what was written (FIN, not a reset) and close the
        socket once the peer has closed its side, or after LINGER_S."""
        if self.ended:
            return
        self.ended = True
        if not self.writer.is_closing() and self.writer.can_write_eof():
            self.writer.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, self.writer.close)

    async def close(self) -> None:
        """End the connection, read and drop what the peer still sends until it closes (LINGER_S at most), then
        close."""
        self.end()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self._drop_rest(), LINGER_S)
        self._player.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await self.writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._player


class AudioSocketCall:
    """A call of one or two AudioSocket connections sharing a UUID: the first is the agent leg."""

    warn_heard_by: Leg | None = "agent"

    def __init__(self, call_uuid: uuid.UUID, info: CallInfo, engines: Engines, board: CallBoard) -> None:
        self.uuid = call_uuid
        self.conns: dict[Leg, Connection] = {}
        self.muted: set[Leg] = set()
        self.end_reason: str | None = None
        self.call = Call(info, engines, self, board)
        self._joined_at: dict[Leg, float] = {}

    async def serve(self, conn: Connection, leg: Leg) -> None:
        """Carry one connection's frames into the call until it ends; then end the whole call."""
        conn.leg = leg
        self.conns[leg] = conn
        self._joined_at[leg] = time.monotonic()
        log.info("audiosocket call %s: %s leg connected", self.call.call_id, leg)
        reason = f"{leg} leg hung up"
        try:
            while (frame := await conn.next_frame()) is not None and frame.kind is not Kind.HANGUP:
                if conn.ended:
                    continue  # we hung up: the peer's last frames are read and dropped until it closes
                self._on_frame(conn, leg, frame)
                await self.call.pace(leg)
        except ProtocolError:
            reason = f"protocol error on the {leg} leg"
            conn.send(Kind.ERROR, ERROR_CODE_PROTOCOL)
        conn.end()
        self.end_reason = self.end_reason or reason
        self.hang_up_all()
        await self.call.end(self.end_reason)

    def _on_frame(self, conn: Connection, leg: Leg, frame: AudioSocketFrame) -> None:
        rate = frame.sample_rate
        if rate is not None:
            if conn.rate is None:
                conn.rate = rate
                self._pad_late_leg(leg, rate)
            if rate != conn.rate:
                raise ProtocolError("an AudioSocket channel changed its sample rate mid-call", fatal=True)
            self.call.feed(leg, frame.payload, "pcm16", rate)
            other = self.conns.get(OTHER_LEG[leg])
            if other is not None and self.call.info.mode == "in-path":
                other.play(bytes(len(frame.payload)) if leg in self.muted else frame.payload, rate)
        elif frame.kind is Kind.DTMF:
            self.call.press(leg, chr(frame.payload[0]))
        elif frame.kind is Kind.ERROR:
            log.warning("audiosocket call %s: Asterisk reported error code %s on the %s leg", self.call.call_id,
                        frame.payload[:1].hex() or "none", leg)
        elif frame.kind is Kind.UUID:
            conn.count_bad(ProtocolError("a second UUID frame on one connection"))

    def _pad_late_leg(self, leg: Leg, rate: int) -> None:
        """A leg that joins late starts with silence, so both legs keep one call clock."""
        late_s = self._joined_at[leg] - self.call.audio_wall_s(0)
        if late_s >= PACKET_S:
            self.call.feed(leg, bytes(2 * int(late_s * rate)), "pcm16", rate)

    def hang_up_all(self) -> None:
        """Send the hang-up frame on every open connection of the call and close it."""
        for conn in self.conns.values():
            conn.hang_up()

    async def hangup(self, reason: str) -> None:
        """Send the hang-up frame on every connection and close them; each connection's task ends the call."""
        if self.end_reason is None:
            self.end_reason = f"hangup: {reason}"
            self.hang_up_all()

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Pass silence instead of the leg's audio to the other party (and drop what is queued)."""
        (self.muted.add if muted else self.muted.discard)(leg)
        other = self.conns.get(OTHER_LEG[leg])
        if muted and other is not None:
            other.clear()
        self.call.mark_muted(leg, muted)

    async def warn(self, leg: Leg | None) -> None:
        """Play a short beep to the leg's speaker."""
        conn = self.conns.get(leg or "agent")
        if conn is not None and self.end_reason is None:
            rate = conn.rate or 8000
            conn.play(warning_tone(rate), rate)


# --- the server -----------------------------------------------------------------------------------


class AudioSocketServer:
    """The TCP listener Asterisk connects to; connections are paired into calls by their UUID."""

    def __init__(self, engines: Engines, board: CallBoard, serve: ServeConfig) -> None:
        self.engines = engines
        self.board = board
        self.serve = serve
        self.calls: dict[uuid.UUID, AudioSocketCall] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0: any free port)."""
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("audiosocket listening on %s:%d", host, self.port)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, hang up every call and wait until each has ended."""
        if self._server is not None:
            self._server.close()
        for call in list(self.calls.values()):
            call.end_reason = call.end_reason or "server shutdown"
            call.hang_up_all()
        for conn in list(self._conns):
            conn.end()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer)
        self._conns.add(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(conn)
        except Exception:  # one broken connection must not take the server down
            log.exception("audiosocket connection failed")
        finally:
            self._conns.discard(conn)
            self._tasks.discard(task)
            await conn.close()

    async def _serve(self, conn: Connection) -> None:
        if not self._allowed(peer_ip(conn)):
            log.warning("audiosocket: refused a connection from %s (not an --audiosocket-peer)", peer_ip(conn))
            conn.send(Kind.ERROR, ERROR_CODE_PROTOCOL)
            return
        call_uuid = await self._read_uuid(conn)
        if call_uuid is None:
            return
        bridge = self.calls.get(call_uuid)
        if bridge is not None and ("customer" in bridge.conns or bridge.end_reason is not None
                                   or peer_ip(bridge.conns["agent"]) != peer_ip(conn)):
            log.warning("audiosocket: refused a connection joining a call it may not join (a third leg, a call "
                        "that has ended, or a peer other than the agent leg's)")
            conn.send(Kind.ERROR, ERROR_CODE_PROTOCOL)
            return
        if bridge is not None:
            await bridge.serve(conn, "customer")
            return
        info = CallInfo(adapter="audiosocket", mode=self.serve.mode, zones=self.serve.zones)
        bridge = self.calls[call_uuid] = AudioSocketCall(call_uuid, info, self.engines, self.board)
        try:
            try:
                await bridge.call.start()
            except CallRefused:  # Call.start logged why; Asterisk's AudioSocket() fails and the dialplan goes on
                bridge.end_reason = "refused: at capacity"
                conn.hang_up()
                return
            except Exception:  # e.g. the disk refused the recording: end what started (its slot comes back)
                conn.hang_up()
                with contextlib.suppress(Exception):
                    await bridge.call.end("call start failed")
                raise
            await bridge.serve(conn, "agent")
        finally:
            if self.calls.get(call_uuid) is bridge:
                del self.calls[call_uuid]

    def _allowed(self, ip: str) -> bool:
        """Whether a peer may connect: one of the configured peers, or with none configured, a loopback one."""
        if self.serve.audiosocket_peers:
            return ip in self.serve.audiosocket_peers
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(ip).is_loopback
        return False

    async def _read_uuid(self, conn: Connection) -> uuid.UUID | None:
        """The first frame must name the call; anything else closes the connection with an error frame."""
        try:
            async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
                frame = await conn.next_frame()
            if frame is not None and frame.kind is Kind.UUID:
                return uuid.UUID(bytes=frame.payload)
        except (ProtocolError, TimeoutError):
            pass
        log.warning("audiosocket: a connection did not start with a UUID frame")
        conn.send(Kind.ERROR, ERROR_CODE_PROTOCOL)
        return None


def peer_ip(conn: Connection) -> str:
    """The address a connection comes from ("" when the socket does not say)."""
    peer = conn.writer.get_extra_info("peername")
    return str(peer[0]) if peer else ""
