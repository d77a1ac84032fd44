"""Desk softphone: the agent's headset and the customer's line bridged in-path through local sound devices."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sounddevice as sd
import soxr

from voicebot.call import Call, CallBoard, CallInfo, Engines
from voicebot.frames import LEGS, Leg

log = logging.getLogger(__name__)


class SoundDeviceError(RuntimeError):
    """A sound device is missing, ambiguous or unusable; the message lists the devices PortAudio has."""


Kind = Literal["input", "output"]
Role = Literal["agent_input", "agent_output", "customer_input", "customer_output"]
ROLES: tuple[Role, ...] = ("agent_input", "agent_output", "customer_input", "customer_output")
OPTIONS: dict[Role, str] = {role: "--" + role.replace("_", "-") for role in ROLES}
BRIDGE: dict[Leg, tuple[Role, Role]] = {"agent": ("agent_input", "customer_output"),
                                        "customer": ("customer_input", "agent_output")}
"""Each leg's input device and the output device the other party listens on."""
EARS: dict[Leg, Role] = {"agent": "agent_output", "customer": "customer_output"}
"""Where each leg's speaker listens (a warning tone for the leg goes there)."""
CALL_RATE = 16000
RATES = (16000, 48000, 44100, 8000)
BLOCK_MS = 20
MAX_QUEUED_MS = 200
TONE_HZ = 1000
TONE_MS = 400
TONE_LEVEL = 0.25
WATCH_S = 0.25
STALL_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DeskDevices:
    """The four devices of a desk: a PortAudio index, a name or a unique part of one; None: the default."""

    agent_input: int | str | None = None
    agent_output: int | str | None = None
    customer_input: int | str | None = None
    customer_output: int | str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The device chosen for one role: its PortAudio index and name, and the format we use it in."""

    role: Role
    index: int
    name: str
    sample_rate: int
    channels: int


def parse_device(text: str | None) -> int | str | None:
    """A device option: digits are a PortAudio index, other text a name (or part of one), empty the default."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else text


def role_kind(role: Role) -> Kind:
    """Whether a role is a device we read from or play to."""
    return "input" if role.endswith("input") else "output"


def device_table(devices: Sequence[Mapping[str, Any]]) -> str:
    """The devices PortAudio lists, one line each."""
    if not devices:
        return "  (none)"
    return "\n".join(f"  {i:>3}  {d['name']}  (in {d['max_input_channels']}, out {d['max_output_channels']}, "
                     f"{d['default_samplerate']:.0f} Hz)" for i, d in enumerate(devices))


def pick_device(spec: int | str | None, kind: Kind, devices: Sequence[Mapping[str, Any]], default: int) -> int:
    """The index `spec` names among devices that can `kind`; LookupError says why none fits."""
    usable = [i for i, d in enumerate(devices) if d[f"max_{kind}_channels"] > 0]
    if spec is None:
        if default in usable:
            return default
        raise LookupError(f"there is no default {kind} device")
    if isinstance(spec, int):
        if spec in usable:
            return spec
        raise LookupError(f"device {spec} is not an {kind} device")
    exact = [i for i in usable if devices[i]["name"] == spec]
    partial = [i for i in usable if spec.lower() in str(devices[i]["name"]).lower()]
    if exact or len(partial) == 1:
        return (exact or partial)[0]
    if partial:
        raise LookupError(f"{spec!r} matches {len(partial)} {kind} devices ({', '.join(map(str, partial))})")
    raise LookupError(f"{spec!r} matches no {kind} device")


def resolve_devices(desk: DeskDevices, devices: Sequence[Mapping[str, Any]], default_input: int,
                    default_output: int) -> dict[Role, int]:
    """PortAudio indexes for the four roles; the customer's devices have no default and no two roles share one."""
    picked: dict[Role, int] = {}
    problems = []
    for role in ROLES:
        spec = getattr(desk, role)
        kind = role_kind(role)
        try:
            if spec is None and role.startswith("customer"):
                raise LookupError("the customer's line has no default device; name it")
            picked[role] = pick_device(spec, kind, devices, default_input if kind == "input" else default_output)
        except LookupError as e:
            problems.append(f"{OPTIONS[role]}: {e}")
    for a, b in (("agent_input", "customer_input"), ("agent_output", "customer_output")):
        if a in picked and picked.get(a) == picked.get(b):
            problems.append(f"{OPTIONS[a]} and {OPTIONS[b]} are the same device ({picked[a]}); the two legs "
                            "need their own devices")
    if problems:
        raise SoundDeviceError(device_message(problems, devices))
    return picked


def device_message(problems: Sequence[str], devices: Sequence[Mapping[str, Any]]) -> str:
    """What was wrong with the chosen devices, which devices exist, and how to pick them."""
    if not devices:
        found = ("PortAudio lists no sound devices: no sound card is present and no sound server "
                 "(PulseAudio, PipeWire) is reachable. Start one or plug in the headset and the line.")
    else:
        found = f"PortAudio lists these sound devices:\n{device_table(devices)}"
    return (f"cannot set up the desk bridge: {'; '.join(problems)}.\n{found}\n"
            f"Pick each device by number or name with {', '.join(OPTIONS.values())} "
            "(see `voicebot softphone --list-devices`).")


def warning_tone(sample_rate: int) -> np.ndarray:
    """A short 1 kHz beep, faded in and out, as int16 samples."""
    t = np.arange(sample_rate * TONE_MS // 1000) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (np.sin(2 * np.pi * TONE_HZ * t) * fade * TONE_LEVEL * 32767).astype(np.int16)


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two int16 blocks of equal length added, clipped to int16."""
    return np.clip(a.astype(np.int32) + b, -32768, 32767).astype(np.int16)


def list_devices() -> str:
    """The sound devices this machine has, as `voicebot softphone --list-devices` prints them."""
    default_in, default_out = (i if i >= 0 else "none" for i in sd.default.device)
    return f"{device_table(sd.query_devices())}\ndefault input: {default_in}, default output: {default_out}"


class Playout:
    """Samples waiting for one output device: bounded (the oldest go first), silence when it runs dry."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.dropped = 0
        self._buf = np.zeros(0, np.int16)
        self._lock = threading.Lock()

    def put(self, pcm: np.ndarray) -> None:
        """Queue samples for playing."""
        with self._lock:
            buf = np.concatenate((self._buf, pcm))
            if len(buf) > self.max_samples:
                self.dropped += len(buf) - self.max_samples
                buf = buf[-self.max_samples:]
            self._buf = buf

    def take(self, n: int) -> np.ndarray:
        """The next `n` samples, padded with silence."""
        with self._lock:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out if len(out) == n else np.pad(out, (0, n - len(out)))


class Converter:
    """A stream of int16 blocks moved from one rate to another, keeping the filter's state across blocks."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._soxr = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16")

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        """The block at the new rate (its length may vary by a sample or two)."""
        return pcm if self._soxr is None else self._soxr.resample_chunk(pcm)


def pick_format(index: int, kind: Kind, device: Mapping[str, Any]) -> tuple[int, int]:
    """(sample rate, channels) the device accepts: 16 kHz mono if it can, else its own rate, else stereo."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    rates = dict.fromkeys((CALL_RATE, int(device["default_samplerate"]), *RATES))
    for channels in (1, 2):
        for rate in rates:
            try:
                check(device=index, samplerate=rate, channels=channels, dtype="int16")
            except (sd.PortAudioError, ValueError):
                continue
            return rate, channels
    raise LookupError(f"device {index} ({device['name']}) accepts no 16-bit mono or stereo {kind} format")


def find_endpoints(desk: DeskDevices) -> dict[Role, Endpoint]:
    """Resolve the four devices and the format each is used in; SoundDeviceError says what exists."""
    devices = sd.query_devices()
    default_in, default_out = sd.default.device
    picked = resolve_devices(desk, devices, default_in, default_out)
    endpoints, problems = {}, []
    for role, index in picked.items():
        try:
            rate, channels = pick_format(index, role_kind(role), devices[index])
        except LookupError as e:
            problems.append(f"{OPTIONS[role]}: {e}")
            continue
        endpoints[role] = Endpoint(role, index, str(devices[index]["name"]), rate, channels)
    if problems:
        raise SoundDeviceError(device_message(problems, devices))
    return endpoints


class Softphone:
    """The desk bridge: agent mic → customer output, customer input → agent headset; the call's in-path control."""

    warn_heard_by: Leg | None = "agent"

    def __init__(self, desk: DeskDevices) -> None:
        self.endpoints = find_endpoints(desk)
        self.call: Call | None = None
        self.end_reason = ""
        self.silenced_ms: dict[Leg, int] = dict.fromkeys(LEGS, 0)
        """Milliseconds of a leg's audio replaced by silence towards the other party (muted or hung up)."""
        self.xruns = 0
        self._muted: frozenset[Leg] = frozenset()
        self._silent = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended = asyncio.Event()
        self._blocks: dict[Leg, int] = dict.fromkeys(LEGS, 0)
        self._playouts = {role: Playout(ep.sample_rate * MAX_QUEUED_MS // 1000)
                          for role, ep in self.endpoints.items() if role_kind(role) == "output"}
        self._tones = {role: Playout(ep.sample_rate) for role, ep in self.endpoints.items()
                       if role_kind(role) == "output"}
        self._converters = {leg: self._leg_converters(leg) for leg in LEGS}
        self._streams: dict[Role, sd.InputStream | sd.OutputStream] = {}

    def _leg_converters(self, leg: Leg) -> tuple[Converter, Converter]:
        src, dst = (self.endpoints[role] for role in BRIDGE[leg])
        return Converter(src.sample_rate, CALL_RATE), Converter(src.sample_rate, dst.sample_rate)

    async def run(self, engines: Engines, board: CallBoard, info: CallInfo) -> Call:
        """Open the devices, then supervise the call until hang-up, stop() or a lost device; returns it ended."""
        self._loop = asyncio.get_running_loop()
        self._open()
        call = self.call = Call(info, engines, self, board)
        watchdog = None
        try:
            await call.start()
            self._start()
            watchdog = asyncio.create_task(self._watch(), name=f"{call.call_id}:devices")
            await self._ended.wait()
        finally:
            self._finish("the bridge was cancelled")
            if watchdog is not None:
                watchdog.cancel()
            self._silent = True
            await asyncio.to_thread(self._close)
            await call.end(self.end_reason)
            log.info("desk bridge closed: %s xruns, %s samples dropped", self.xruns,
                     sum(p.dropped for p in self._playouts.values()))
        return call

    def stop(self, reason: str) -> None:
        """End the call from outside (the agent quits, a signal); call on the event loop's thread."""
        self._finish(reason)

    async def hangup(self, reason: str) -> None:
        """Silence both directions at once and end the bridge; the run task then ends the call."""
        self._silent = True
        self._finish(f"hangup: {reason}")

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Send silence instead of the leg's audio to the other party (we still record and transcribe it)."""
        self._muted = self._muted | {leg} if muted else self._muted - {leg}
        if self.call is not None:
            self.call.mark_muted(leg, muted)

    async def warn(self, leg: Leg | None) -> None:
        """Mix a short 1 kHz beep into what the leg's speaker hears (the agent's headset by default)."""
        role = EARS[leg or "agent"]
        if not self._silent:
            self._tones[role].put(warning_tone(self.endpoints[role].sample_rate))

    def _finish(self, reason: str) -> None:
        if not self._ended.is_set():
            self.end_reason = reason
            self._ended.set()

    def _open(self) -> None:
        try:
            for role, ep in self.endpoints.items():
                kind = role_kind(role)
                stream_type = sd.InputStream if kind == "input" else sd.OutputStream
                callback = self._input_callback(role) if kind == "input" else self._output_callback(role)
                self._streams[role] = stream_type(
                    device=ep.index, samplerate=ep.sample_rate, channels=ep.channels, dtype="int16",
                    blocksize=ep.sample_rate * BLOCK_MS // 1000, callback=callback,
                    finished_callback=functools.partial(self._on_finished, role))
        except sd.PortAudioError as e:
            self._close()
            raise SoundDeviceError(device_message([f"{OPTIONS[role]} ({ep.name}) could not be opened: {e}"],
                                                  sd.query_devices())) from e

    def _start(self) -> None:
        try:
            for stream in self._streams.values():
                stream.start()
        except sd.PortAudioError as e:
            log.warning("a sound device failed to start (%s)", type(e).__name__)
            self._finish("device error: a sound device failed to start")

    def _close(self) -> None:
        self._closing = True
        for stream in self._streams.values():
            try:
                stream.close(ignore_errors=True)
            except sd.PortAudioError:
                log.warning("a sound device failed to close")

    async def _watch(self) -> None:
        """End the call when a device stops on its own or its input stalls (unplugged, server gone)."""
        seen = dict(self._blocks)
        stalled_s = dict.fromkeys(LEGS, 0.0)
        while not self._ended.is_set():
            await asyncio.sleep(WATCH_S)
            for role, stream in self._streams.items():
                if not stream.active:
                    self._lost(role)
            for leg in LEGS:
                stalled_s[leg] = 0.0 if self._blocks[leg] != seen[leg] else stalled_s[leg] + WATCH_S
                if stalled_s[leg] >= STALL_S:
                    self._lost(BRIDGE[leg][0])
            seen = dict(self._blocks)

    def _lost(self, role: Role) -> None:
        if not self._closing:
            log.warning("sound device for %s stopped", role)
            self._silent = True
            self._finish(f"device lost: {role.replace('_', ' ')} ({self.endpoints[role].name})")

    def _on_finished(self, role: Role) -> None:
        if not self._closing:
            self._threadsafe(self._lost, role)

    def _threadsafe(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the call is over
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[union-attr]

    def _deliver(self, leg: Leg, payload: bytes) -> None:
        self._blocks[leg] += 1
        if self.call is not None and not self._ended.is_set():
            self.call.feed(leg, payload, "pcm16", CALL_RATE)

    def _input_callback(self, role: Role) -> Any:
        leg: Leg = "agent" if role == "agent_input" else "customer"
        to_call, to_other = self._converters[leg]
        playout = self._playouts[BRIDGE[leg][1]]

        def callback(indata: np.ndarray, frames: int, time: Any, status: sd.CallbackFlags) -> None:
            if status:
                self.xruns += 1
            pcm = indata[:, 0].copy()
            call_pcm = to_call(pcm)
            if len(call_pcm):
                self._threadsafe(self._deliver, leg, call_pcm.tobytes())
            if self._silent or leg in self._muted:
                self.silenced_ms[leg] += frames * 1000 // self.endpoints[role].sample_rate
                pcm = np.zeros_like(pcm)
            playout.put(to_other(pcm))

        return callback

    def _output_callback(self, role: Role) -> Any:
        playout, tones = self._playouts[role], self._tones[role]

        def callback(outdata: np.ndarray, frames: int, time: Any, status: sd.CallbackFlags) -> None:
            if status:
                self.xruns += 1
            pcm = mix(playout.take(frames), tones.take(frames))
            outdata[:] = 0 if self._silent else pcm[:, None]

        return callback
