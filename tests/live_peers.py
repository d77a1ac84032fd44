"""What live-call tests talk to: real SIP processes, an emulated Twilio, emulated Asterisk channels, Chromium.

Shared by the adapter tests and the console tests (`from live_peers import ...`; tests/ is on sys.path).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import soundfile as sf
from aiohttp import WSMsgType, web
from playwright.async_api import Browser, Page, expect

from asr.codecs import encode, read_audio_file, resample
from voicebot.adapters.audiosocket_frames import AudioSocketFrame, Kind, parse_frames, serialize_frame
from voicebot.tts import EspeakSynthesizer
from voicebot.web.keys import AUDIOSOCKET

SIP_DIR = Path(__file__).parent / "sip"


# --- ports, the app, board events and audit records -------------------------------------------------

def free_port(*, udp: tuple[int, ...] = (0,), tcp: tuple[int, ...] = ()) -> int:
    """A port p with UDP p+i (i in udp) and TCP p+j (j in tcp) free right now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + max(udp + tcp) > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for kind, offsets in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)):
                for i in offsets:
                    s = socket.socket(socket.AF_INET, kind)
                    held.append(s)
                    s.bind(("127.0.0.1", port + i))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port found")


def sip_port() -> int:
    """A port a baresip-based UA can listen on: UDP and TCP p, and TCP p+1 (its TLS listener)."""
    return free_port(udp=(0,), tcp=(0, 1))


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 at a free port, as `voicebot serve` does; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def next_event(events: asyncio.Queue, kind: str, timeout_s: float = 120.0) -> dict:
    """The next board event of a kind (the timeout only guards against a hung test)."""
    async with asyncio.timeout(timeout_s):
        while (event := await events.get())["type"] != kind:
            pass
    return event


def call_records(engines, call_id: str) -> list:
    """The audit records of one call."""
    return [r for r in engines.audit.records() if r.call_id == call_id]


def assert_threat_hung_up(recs: list) -> dict:
    """The audit trail of a call whose agent threatened: gang flag, engine hang-up, call_end; returns the action."""
    assert recs[0].kind == "call_start" and recs[-1].kind == "call_end"
    flag = next(r for r in recs if r.kind == "flag" and r.data["category"] == "gang")
    action = next(r for r in recs if r.kind == "action" and r.data["action"] == "hangup")
    assert flag.data["leg"] == "agent" and action.seq > flag.seq and action.actor == "engine"
    assert recs[-1].data["reason"].startswith("hangup")
    return action.data


# --- real SIP peers ---------------------------------------------------------------------------------

def fill(template: str, dest: Path, **values: object) -> Path:
    """Copy tests/sip/<template> to `dest` with its @NAME@ placeholders filled."""
    text = (SIP_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    assert not re.search(r"@[A-Z_]+@", text), f"unfilled placeholder in {template}"
    dest.write_text(text)
    return dest


class Peers:
    """Subprocesses a test starts; each is stopped at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, name: str, *args: str) -> asyncio.subprocess.Process:
        out = (self.workdir / f"{name}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(*args, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                                    stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.procs.append(proc)
        return proc

    async def sipp(self, name: str, scenario: Path | None, target: str, *extra: str,
                   port: int | None = None) -> asyncio.subprocess.Process:
        """sipp for one call: a UAC playing `scenario` to `target`, or (no scenario) an echoing UAS on `port`."""
        role = ["-sf", str(scenario)] if scenario else ["-sn", "uas", "-rtp_echo"]
        args = ["sipp", *role, *extra, "-m", "1", "-i", "127.0.0.1",
                "-p", str(port or free_port()), "-mi", "127.0.0.1", "-mp", str(free_port(udp=(0, 1, 2, 3))),
                "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_err", *([target] if target else [])]
        return await self.start(name, *args)

    def log(self, name: str) -> str:
        paths = [self.workdir / f"{name}.log", *self.workdir.glob("*_errors.log")]
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in paths if p.exists())

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def listening(port: int) -> None:
    """Wait until something holds UDP `port` (a peer started in the background is ready)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on UDP {port}")


async def finished(proc: asyncio.subprocess.Process, timeout_s: float = 45) -> int:
    """The exit code of a peer, once it has exited."""
    return await asyncio.wait_for(proc.wait(), timeout_s)


# --- `voicebot serve` in its own process ---------------------------------------------------------------

def health(port: int) -> tuple[int, dict]:
    """`/healthz` of a server on this machine: status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def start_serve(port: int, data: Path, log: Path, *options: str, env: dict[str, str] | None = None
                ) -> subprocess.Popen[bytes]:
    """`voicebot serve --rules-only` with its database (unless `env` names VOICEBOT_DB) and recordings in `data`
    (and `options`, `env` added); returns once /healthz answers."""
    env = {**os.environ, "VOICEBOT_MEDIA_TOKEN": "m" * 32, "VOICEBOT_DATA_DIR": str(data), **(env or {})}
    voicebot = str(Path(sys.executable).parent / "voicebot")
    with log.open("wb") as out:
        db = [] if "VOICEBOT_DB" in env else ["--db", str(data / "v.db")]
        proc = subprocess.Popen([voicebot, "serve", "--port", str(port), *db, "--rules-only", *options], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    for _ in range(300):
        with contextlib.suppress(OSError, ValueError):
            health(port)
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"voicebot serve did not start: {log.read_text()[-500:]}")


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- an emulated Twilio Media Streams peer ---------------------------------------------------------

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL_SID = "CA0123456789abcdef0123456789abcdef"
ULAW_SILENCE = b"\xff" * 160
"""20 ms of μ-law silence."""
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def ulaw_packets(path: Path, channel: int = 0) -> list[bytes]:
    """A 16 kHz utterance (one channel of it) as 20 ms μ-law 8 kHz packets, as Twilio sends them."""
    audio = read_audio_file(path)
    ulaw = encode(resample(audio.channels[channel], audio.sample_rate, 8000), "ulaw")
    return [ulaw[i : i + 160] for i in range(0, len(ulaw) - 159, 160)]


# --- English speech, spoken by espeak-ng -----------------------------------------------------------

AGENT_LINES = ("Hello, this is Anna from Acme Recovery. This call is recorded.",
               "Listen to me. If you do not pay today, we will break your legs.")
CUSTOMER_LINES = ("Yes, speaking.", "I cannot pay right now.")


def english_call(path: Path) -> Path:
    """A stereo two-leg English call spoken by espeak-ng: the agent greets, the customer answers, the agent
    threatens."""
    voice = EspeakSynthesizer()
    rate, gap = voice.sample_rate, np.zeros(voice.sample_rate, dtype=np.int16)
    agent, customer = [], []
    for said, reply in zip(AGENT_LINES, CUSTOMER_LINES, strict=True):
        a, c = voice.synthesize(said, "en"), voice.synthesize(reply, "en")
        agent += [a, gap, np.zeros(len(c), np.int16), gap]
        customer += [np.zeros(len(a), np.int16), gap, c, gap]
    sf.write(path, np.stack([np.concatenate(agent), np.concatenate(customer)], axis=1), rate)
    return path


def english_speech(text: str, path: Path, rate: int = 8000) -> Path:
    """One English utterance spoken by espeak-ng, slowly (Whisper tiny.en hears its robotic voice better), as a mono
    16-bit WAV file at `rate`."""
    voice = EspeakSynthesizer(speed_wpm=130)
    sf.write(path, resample(voice.synthesize(text, "en"), voice.sample_rate, rate), rate, subtype="PCM_16")
    return path


def start_message(tracks: list[str], **params: str) -> dict:
    """A `start` as Twilio sends it."""
    return {"event": "start", "sequenceNumber": "1", "streamSid": SID,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": SID, "callSid": CALL_SID, "tracks": tracks,
                      "customParameters": params,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


def media_message(track: str, seq: int, chunk: int, payload: bytes) -> dict:
    """A `media` message; every number is a string, as Twilio sends it."""
    return {"event": "media", "sequenceNumber": str(seq), "streamSid": SID,
            "media": {"track": track, "chunk": str(chunk), "timestamp": str(chunk * 20),
                      "payload": base64.b64encode(payload).decode()}}


async def collect(ws) -> list[dict]:
    """Every message the server sends until it closes the socket."""
    got = []
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            got.append(json.loads(msg.data))
    return got


async def send_media(ws, track_packets: dict[str, list[bytes]], *, packet_s: float = 0.005) -> int:
    """Send the tracks' packets side by side, 20 ms each, at 4× real time; stops when the server closes."""
    n = max(len(p) for p in track_packets.values())
    seq = 10
    for i in range(n):
        for track, packets in track_packets.items():
            if ws.closed:
                return i
            seq += 1
            await ws.send_json(media_message(track, seq, i + 1, packets[i] if i < len(packets) else ULAW_SILENCE))
        await asyncio.sleep(packet_s)
    return n


class TwilioDebtor:
    """An emulated debtor on a bidirectional Media Stream: hears the bot's audio, answers with real speech or keys.

    It sends `inbound` audio (silence between its replies, as a phone line does) paced in real time.
    """

    def __init__(self, ws) -> None:
        self.ws = ws
        self.heard: list[tuple[float, bytes]] = []
        """(time.monotonic(), μ-law payload) of every media message the bot sent."""
        self.clears: list[float] = []
        self._speech: list[bytes] = []
        self._seq = 10
        self._chunk = 0
        self._reader = asyncio.create_task(self._read())
        self._sender = asyncio.create_task(self._send_loop())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data["event"] == "media":
                    self.heard.append((time.monotonic(), base64.b64decode(data["media"]["payload"])))
                elif data["event"] == "clear":
                    self.clears.append(time.monotonic())

    async def _send_loop(self) -> None:
        t0 = time.monotonic()
        while not self.ws.closed:
            payload = self._speech.pop(0) if self._speech else ULAW_SILENCE
            self._seq, self._chunk = self._seq + 1, self._chunk + 1
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_json(media_message("inbound", self._seq, self._chunk, payload))
            await asyncio.sleep(max(0.0, t0 + self._chunk * 0.02 - time.monotonic()))

    @property
    def closed(self) -> bool:
        """Whether the server has ended the stream."""
        return self._reader.done()

    async def say(self, packets: list[bytes]) -> float:
        """Speak an utterance; returns once it has been sent, with the time its last packet went."""
        self._speech.extend(packets)
        while self._speech and not self.closed:
            await asyncio.sleep(0.02)
        return time.monotonic()

    async def press(self, digits: str) -> None:
        """Key digits, as Twilio's `dtmf` messages."""
        for digit in digits:
            self._seq += 1
            await self.ws.send_json({"event": "dtmf", "streamSid": SID, "sequenceNumber": str(self._seq),
                                     "dtmf": {"track": "inbound_track", "digit": digit}})

    async def bot_quiet(self, since: int = 0, gap_s: float = 0.8, timeout_s: float = 60.0) -> None:
        """Wait until the bot has said something after its `since`-th packet, then been quiet for `gap_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.closed:
            if len(self.heard) > since and time.monotonic() - self.heard[-1][0] > gap_s:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop sending and wait for the server to finish the stream."""
        self._sender.cancel()
        if not self.ws.closed:
            await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# --- emulated Asterisk AudioSocket channels --------------------------------------------------------

SLIN_SILENCE = bytes(320)
"""20 ms of 8 kHz slin silence."""


def slin_packets(path: Path) -> list[bytes]:
    """A 16 kHz utterance as 20 ms slin 8 kHz payloads, as Asterisk sends them."""
    audio = read_audio_file(path)
    pcm = resample(audio.channels[0], audio.sample_rate, 8000).astype("<i2").tobytes()
    return [pcm[i : i + 320] for i in range(0, len(pcm) - 319, 320)]


class AsteriskChannel:
    """An emulated Asterisk channel in AudioSocket(): it sends the UUID, then audio; it records what it hears."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.heard: list[AudioSocketFrame] = []
        self.closed = asyncio.Event()
        self.heard_any = asyncio.Event()
        self._task = asyncio.create_task(self._listen())

    @classmethod
    async def connect(cls, port: int, call_uuid: uuid.UUID, source: str = "127.0.0.1") -> AsteriskChannel:
        """Open the TCP connection (from the loopback address `source`) and send the call's UUID, as Asterisk does."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        channel = cls(reader, writer)
        channel.send(Kind.UUID, call_uuid.bytes)
        return channel

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        """Write one frame."""
        if not self.writer.is_closing():
            self.writer.write(serialize_frame(kind, payload))

    async def play(self, packets: list[bytes], *, packet_s: float = 0.02) -> int:
        """Send slin packets in real time until the server closes the connection; returns how many were sent."""
        t0 = asyncio.get_running_loop().time()
        for i, packet in enumerate(packets):
            if self.closed.is_set():
                return i
            self.send(Kind.AUDIO, packet)
            await asyncio.sleep(max(0.0, t0 + (i + 1) * packet_s - asyncio.get_running_loop().time()))
        return len(packets)

    async def hang_up(self) -> None:
        """The channel hangs up: Asterisk just closes the socket."""
        self.writer.close()
        await self.closed.wait()

    async def _listen(self) -> None:
        buffer = bytearray()
        try:
            while data := await self.reader.read(65536):
                buffer += data
                self.heard += parse_frames(buffer)
                if self.heard:
                    self.heard_any.set()
        except ConnectionError:
            pass
        finally:
            self.writer.close()
            self.closed.set()

    @property
    def audio(self) -> list[bytes]:
        """The audio payloads heard."""
        return [f.payload for f in self.heard if f.kind is Kind.AUDIO]


async def open_call(app: web.Application, events: asyncio.Queue, call_uuid: uuid.UUID | None = None, *,
                    legs: int = 2) -> tuple[list[AsteriskChannel], str]:
    """One or two channels of a call (agent first, then customer, as Asterisk opens them), and the call's id."""
    port, call_uuid = app[AUDIOSOCKET].port, call_uuid or uuid.uuid4()
    agent = await AsteriskChannel.connect(port, call_uuid)
    call_id = (await next_event(events, "call_start"))["call_id"]
    if legs == 1:
        return [agent], call_id
    customer = await AsteriskChannel.connect(port, call_uuid)
    customer.send(Kind.AUDIO, SLIN_SILENCE)
    async with asyncio.timeout(10):
        await agent.heard_any.wait()  # the customer's first packet, relayed: both legs are bridged
    return [agent, customer], call_id


# --- the supervisor's headless Debian Chromium ------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "correct horse battery"
SLOW_S = 60_000
"""Playwright waits (ms) for things the recognizer must hear first; the machine may be busy."""


async def signed_in_page(browser: Browser, base: str, username: str, csp_errors: list[str]) -> Page:
    """A page that went to the console, was sent to the sign-in form, signed in and sees the live stream."""
    page = await browser.new_page()
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    await page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(base + "/")
    await expect(page.locator("#conn-status")).to_have_text("live", timeout=15_000)
    return page
