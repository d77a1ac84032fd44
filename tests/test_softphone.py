"""The desk softphone on real sound devices: PulseAudio null sinks seen through ALSA's pulse plugin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sounddevice as sd
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from voicebot.adapters.softphone import (
    Converter,
    DeskDevices,
    Playout,
    Softphone,
    SoundDeviceError,
    device_message,
    parse_device,
    pick_device,
    resolve_devices,
    warning_tone,
)
from voicebot.audit import AuditLog
from voicebot.call import CallBoard, CallInfo

VOICEBOT = str(Path(sys.executable).parent / "voicebot")
SHANGHAI_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
RATE = 16000
SINKS = ("vb_agent_mic", "vb_customer_line", "vb_agent_headset", "vb_customer_out")
DESK = DeskDevices(agent_input="vb_agent_mic", agent_output="vb_agent_headset",
                   customer_input="vb_customer_line", customer_output="vb_customer_out")
DESK_ARGS = ["--agent-input", "vb_agent_mic", "--agent-output", "vb_agent_headset",
             "--customer-input", "vb_customer_line", "--customer-output", "vb_customer_out"]
READY_S = 15


# --- the sound server: a private PulseAudio with four null sinks, plus a far one a test can kill ---------


@dataclass
class PulseDesk:
    """A running private PulseAudio whose null sinks are the desk's devices."""

    root: Path
    env: dict[str, str]
    """Environment for clients (paplay, parec, voicebot) that should see the desk."""
    daemon: subprocess.Popen
    far: subprocess.Popen
    """A second server holding the line `vb_far_line`; killing it is a device disappearing."""

    def pactl(self, *args: str) -> str:
        """Run pactl against the desk's server."""
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    async def play(self, sink: str, wav: Path) -> None:
        """Play a file into a sink in real time (its monitor is the matching input device)."""
        proc = await asyncio.create_subprocess_exec("paplay", f"--device={sink}", str(wav), env=self.env)
        assert await proc.wait() == 0

    @contextlib.contextmanager
    def record(self, sink: str, path: Path) -> Iterator[Path]:
        """Record what is played to a sink, as raw 16 kHz mono PCM16, for the duration of the block."""
        with path.open("wb") as out:
            proc = subprocess.Popen(["parec", f"--device={sink}.monitor", "--format=s16le", f"--rate={RATE}",
                                     "--channels=1", "--latency-msec=20"], stdout=out, env=self.env)
            try:
                deadline = time.monotonic() + READY_S
                while path.stat().st_size == 0:  # a null sink's monitor streams silence once parec is connected
                    assert proc.poll() is None and time.monotonic() < deadline, f"parec could not record {sink}"
                    time.sleep(0.02)
                yield path
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=10)


def start_pulse(root: Path, *modules: str) -> subprocess.Popen:
    """A PulseAudio daemon in `root` (socket `root/native`) with `modules` loaded; returns once it answers."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root), "PULSE_SERVER": f"unix:{root}/native"}
    cmd = ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
           "--system=false", f"--load=module-native-protocol-unix socket={root}/native auth-anonymous=1",
           *(f"--load={m}" for m in modules)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=(root / "log").open("w"))
    deadline = time.monotonic() + READY_S
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"PulseAudio did not start: {(root / 'log').read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def asoundrc(root: Path, far: Path) -> str:
    """ALSA devices named after the sinks: inputs read a sink's monitor, outputs play to the sink."""
    lines = [f'pcm.{s} {{ type pulse; server "unix:{root}/native"; device "{s}.monitor" }}' for s in SINKS[:2]]
    lines += [f'pcm.{s} {{ type pulse; server "unix:{root}/native"; device "{s}" }}' for s in SINKS[2:]]
    lines.append(f'pcm.vb_far_line {{ type pulse; server "unix:{far}/native"; device "vb_far_line.monitor" }}')
    return "\n".join(lines) + "\n"


def rescan_devices() -> None:
    """Make PortAudio enumerate the devices again (it lists them once, when sounddevice is imported)."""
    sd._terminate()
    sd._initialize()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseDesk]:
    """The desk's devices, visible to this process and to the clients given `desk.env`."""
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        assert shutil.which(tool), f"{tool} missing: install Debian's pulseaudio and pulseaudio-utils"
    root = tmp_path_factory.mktemp("pulse")
    daemon = start_pulse(root / "desk")
    far = start_pulse(root / "far", "module-null-sink sink_name=vb_far_line rate=16000 channels=1")
    (root / "config" / "alsa").mkdir(parents=True)
    (root / "config" / "alsa" / "asoundrc").write_text(asoundrc(root / "desk", root / "far"))
    env = {**os.environ, "PULSE_SERVER": f"unix:{root}/desk/native", "XDG_CONFIG_HOME": str(root / "config")}
    pulse = PulseDesk(root, env, daemon, far)
    modules = [pulse.pactl("load-module", "module-null-sink", f"sink_name={s}", f"rate={RATE}", "channels=1")
               for s in SINKS]
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = env["XDG_CONFIG_HOME"]  # where ALSA finds the desk's device names
    rescan_devices()
    try:
        yield pulse
    finally:
        if saved is None:
            del os.environ["XDG_CONFIG_HOME"]
        else:
            os.environ["XDG_CONFIG_HOME"] = saved
        for module in modules:
            subprocess.run(["pactl", "unload-module", module], env=env, capture_output=True, timeout=10)
        for proc in (daemon, far):
            proc.terminate()
            proc.wait(timeout=10)
        rescan_devices()


# --- helpers ------------------------------------------------------------------------------------------


def speech_s(pcm: np.ndarray, threshold: float = 500.0) -> float:
    """Seconds of 20 ms blocks louder than `threshold` RMS."""
    blocks = pcm[: len(pcm) // 320 * 320].reshape(-1, 320).astype(np.float64)
    return float((np.sqrt((blocks**2).mean(axis=1)) > threshold).sum() * 0.02)


def read_raw(path: Path) -> np.ndarray:
    """A raw PCM16 recording."""
    return np.fromfile(path, dtype=np.int16)


def desk_info() -> CallInfo:
    """A softphone call at noon in Shanghai, so the call clock lets it run."""
    return CallInfo(adapter="softphone", zones=("Asia/Shanghai",), started_at=SHANGHAI_NOON, agent_id="desk-7")


async def next_event(events: asyncio.Queue, kind: str, *, leg: str | None = None, after_s: float = -1.0,
                     seen: list | None = None) -> dict:
    """The next event of `kind` (on `leg`, starting after `after_s` call time); earlier ones go to `seen`."""
    while True:
        event = await asyncio.wait_for(events.get(), 60)
        if seen is not None:
            seen.append(event)
        if event["type"] == kind and leg in (None, event.get("leg")) and (event.get("start_s") or 0) > after_s:
            return event


def drain(events: asyncio.Queue, seen: list) -> list:
    """Every event seen plus those still queued."""
    return seen + [events.get_nowait() for _ in range(events.qsize())]


def noon_zone() -> str:
    """An Etc/GMT zone where it is around noon now (the call clock then lets a live call run)."""
    offset = 12 - datetime.now(UTC).hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


# --- pure parts -----------------------------------------------------------------------------------------

DEVICES = [
    {"name": "pulse", "max_input_channels": 32, "max_output_channels": 32, "default_samplerate": 44100.0},
    {"name": "USB Headset: Audio (hw:1,0)", "max_input_channels": 1, "max_output_channels": 2,
     "default_samplerate": 48000.0},
    {"name": "USB Phone Adapter (hw:2,0)", "max_input_channels": 1, "max_output_channels": 1,
     "default_samplerate": 8000.0},
    {"name": "HDMI out (hw:0,3)", "max_input_channels": 0, "max_output_channels": 8, "default_samplerate": 48000.0},
]


@pytest.mark.parametrize(("text", "parsed"), [(None, None), ("", None), (" 3 ", 3), ("USB", "USB"),
                                              ("hw:1,0", "hw:1,0")])
def test_device_options_parse_numbers_as_indexes(text: str | None, parsed: int | str | None) -> None:
    assert parse_device(text) == parsed


@pytest.mark.parametrize(("spec", "kind", "index"), [
    (None, "input", 0), (1, "input", 1), ("pulse", "output", 0), ("headset", "input", 1),
    ("Phone Adapter", "output", 2), ("hdmi", "output", 3),
])
def test_pick_device_by_index_exact_or_unique_name(spec: int | str | None, kind: str, index: int) -> None:
    assert pick_device(spec, kind, DEVICES, default=0) == index  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "kind", "reason"), [
    ("hdmi", "input", "'hdmi' matches no input device"), (3, "input", "device 3 is not an input device"),
    ("usb", "input", "'usb' matches 2 input devices (1, 2)"), (None, "input", "no default input device"),
])
def test_pick_device_explains_a_bad_choice(spec: int | str | None, kind: str, reason: str) -> None:
    with pytest.raises(LookupError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        pick_device(spec, kind, DEVICES, default=-1)  # type: ignore[arg-type]


def test_resolve_refuses_shared_and_missing_customer_devices() -> None:
    with pytest.raises(SoundDeviceError) as e:
        resolve_devices(DeskDevices(agent_input="Headset", customer_input="Headset"), DEVICES, 1, 1)
    message = str(e.value)
    assert "--agent-input and --customer-input are the same device (1)" in message
    assert "--customer-output: the customer's line has no default device" in message
    assert "USB Phone Adapter (hw:2,0)" in message and "--list-devices" in message
    desk = DeskDevices(agent_input="Headset", agent_output="Headset", customer_input="Phone",
                       customer_output="Phone")
    assert resolve_devices(desk, DEVICES, 0, 0) == {"agent_input": 1, "agent_output": 1, "customer_input": 2,
                                                    "customer_output": 2}


def test_no_device_message_says_none_exist_and_how_to_pick() -> None:
    message = device_message(["--agent-input: there is no default input device"], [])
    assert "PortAudio lists no sound devices" in message and "--customer-output" in message


def test_playout_is_bounded_and_pads_with_silence() -> None:
    playout = Playout(max_samples=4)
    playout.put(np.arange(1, 7, dtype=np.int16))
    assert playout.dropped == 2
    assert playout.take(3).tolist() == [3, 4, 5]
    assert playout.take(3).tolist() == [6, 0, 0]


@given(st.text(max_size=20))
def test_any_device_option_picks_a_device_or_says_why_not(text: str) -> None:
    try:
        index = pick_device(parse_device(text), "input", DEVICES, default=0)
    except LookupError:
        return
    assert DEVICES[index]["max_input_channels"] > 0


def test_converter_keeps_a_tone_across_blocks() -> None:
    convert = Converter(48000, RATE)
    t = np.arange(48000) / 48000
    tone = (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.int16)
    out = np.concatenate([convert(block) for block in tone.reshape(-1, 960)])
    assert abs(len(out) - RATE) < 400
    steady = out[800:-800].astype(np.float64)
    assert abs(np.argmax(np.abs(np.fft.rfft(steady))) * RATE / len(steady) - 1000) < 5
    assert 6500 < np.sqrt((steady**2).mean()) < 7600, "no clicks or gaps at block edges"


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_warning_tone_is_a_short_1khz_beep(rate: int) -> None:
    tone = warning_tone(rate)
    spectrum = np.abs(np.fft.rfft(tone))
    assert abs(np.argmax(spectrum) * rate / len(tone) - 1000) < 5
    assert tone[0] == 0 and 0.3 < len(tone) / rate < 0.5


# --- the bridge on real devices -------------------------------------------------------------------------


@pytest.mark.sound
@pytest.mark.model
async def test_agent_threat_at_the_desk_hangs_up_the_bridge(desk: PulseDesk, engines, shared: Path,
                                                            tmp_path: Path) -> None:
    board = CallBoard()
    events = board.listen(maxsize=0)
    phone = Softphone(DESK)
    with desk.record("vb_customer_out", tmp_path / "customer_hears.raw") as customer_hears, \
            desk.record("vb_agent_headset", tmp_path / "agent_hears.raw") as agent_hears:
        task = asyncio.create_task(phone.run(engines, board, desk_info()))
        seen = [await next_event(events, "call_start")]
        await desk.play("vb_customer_line", shared / "audio" / "tts-cmn" / "c03.wav")
        await desk.play("vb_agent_mic", shared / "audio" / "tts-cmn" / "a11.wav")
        call = await asyncio.wait_for(task, 60)
    seen = drain(events, seen)

    assert seen[-1]["type"] == "call_end" and seen[-1]["reason"] == "hangup: gang (critical)"
    finals = {e["leg"]: e["text"] for e in seen if e["type"] == "final"}
    assert finals.get("customer") and finals.get("agent"), "both legs were transcribed"
    assert any(e["type"] == "flag" and e["category"] == "gang" and e["leg"] == "agent" for e in seen)
    assert call.ended_reason == "hangup: gang (critical)" and not board.calls

    records = list(engines.audit.records())
    assert records[0].kind == "call_start" and records[0].data["adapter"] == "softphone"
    assert records[-1].kind == "call_end" and records[-1].data["reason"] == "hangup: gang (critical)"
    flag_seq = next(r.seq for r in records if r.kind == "flag" and r.data["category"] == "gang")
    action = next(r for r in records if r.kind == "action" and r.data["action"] == "hangup")
    assert action.seq > flag_seq and action.actor == "engine" and action.data["by"] == "adapter"
    assert engines.audit.verify().ok

    assert speech_s(read_raw(agent_hears)) > 1.0, "the agent heard the customer through the bridge"
    assert speech_s(read_raw(customer_hears)) > 0.3, "the customer heard the agent until the hang-up"


@pytest.mark.sound
@pytest.mark.model
async def test_profanity_mutes_the_agent_towards_the_customer(desk: PulseDesk, engines, shared: Path,
                                                              tmp_path: Path) -> None:
    tts = shared / "audio" / "tts-cmn"
    curse, lawful = sf.read(tts / "a13.wav", dtype="int16")[0], sf.read(tts / "b01.wav", dtype="int16")[0]
    gap = np.zeros(int(1.5 * RATE), np.int16)
    sf.write(tmp_path / "agent.wav", np.concatenate([curse, gap, lawful]), RATE, subtype="PCM_16")
    board = CallBoard()
    events = board.listen(maxsize=0)
    phone = Softphone(DESK)
    with desk.record("vb_customer_out", tmp_path / "customer_hears.raw") as customer_hears:
        task = asyncio.create_task(phone.run(engines, board, desk_info()))
        seen = [await next_event(events, "call_start")]
        await desk.play("vb_agent_mic", tmp_path / "agent.wav")
        after_curse_s = len(curse) / RATE
        await next_event(events, "final", leg="agent", after_s=after_curse_s, seen=seen)
        phone.stop("the agent left the desk")
        call = await asyncio.wait_for(task, 30)
    seen = drain(events, seen)

    mute = next(e for e in seen if e["type"] == "action" and e["action"] == "mute")
    assert mute["leg"] == "agent" and mute["actor"] == "engine"
    assert call.muted == {"agent"} and call.ended_reason == "the agent left the desk"
    assert any(r.kind == "action" and r.data["action"] == "mute" for r in engines.audit.records())
    assert phone.silenced_ms["agent"] > 5000, "the adapter sent silence instead of the agent's lawful line"
    heard = speech_s(read_raw(customer_hears))
    assert speech_s(lawful) > 4.0 and heard < speech_s(curse) + 0.5, \
        f"the customer heard {heard:.2f} s of speech: the line after the mute got through"


@pytest.mark.sound
@pytest.mark.model
async def test_supervisor_warning_beeps_in_the_agent_headset(desk: PulseDesk, engines, tmp_path: Path) -> None:
    board = CallBoard()
    events = board.listen(maxsize=0)
    phone = Softphone(DESK)
    with desk.record("vb_agent_headset", tmp_path / "agent_hears.raw") as agent_hears:
        task = asyncio.create_task(phone.run(engines, board, desk_info()))
        start = await next_event(events, "call_start")
        board.calls[start["call_id"]].act("warn", actor="alice", reason="mind the script", leg="agent")
        await next_event(events, "action")
        await asyncio.sleep(1.0)  # the beep plays in real time
        phone.stop("the agent left the desk")
        await asyncio.wait_for(task, 30)
    pcm = read_raw(agent_hears).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * RATE / len(pcm) - 1000) < 5
    assert 0.2 < speech_s(read_raw(agent_hears), threshold=2000) < 0.6
    warn = next(r for r in engines.audit.records() if r.kind == "action")
    assert warn.actor == "alice" and warn.data["action"] == "warn"


@pytest.mark.sound
@pytest.mark.model
async def test_a_device_that_disappears_ends_the_call_with_its_record(desk: PulseDesk, engines) -> None:
    board = CallBoard()
    events = board.listen(maxsize=0)
    phone = Softphone(DeskDevices(agent_input="vb_agent_mic", agent_output="vb_agent_headset",
                                  customer_input="vb_far_line", customer_output="vb_customer_out"))
    task = asyncio.create_task(phone.run(engines, board, desk_info()))
    await next_event(events, "call_start")
    desk.far.terminate()
    call = await asyncio.wait_for(task, 30)
    assert call.ended_reason == "device lost: customer input (vb_far_line)"
    records = list(engines.audit.records())
    assert records[-1].kind == "call_end" and records[-1].data["reason"] == call.ended_reason
    assert engines.audit.verify().ok


@pytest.mark.sound
def test_a_bogus_device_name_is_refused_with_the_devices_there_are(desk: PulseDesk) -> None:
    with pytest.raises(SoundDeviceError) as e:
        Softphone(DeskDevices(agent_input="vb_agent_mic", agent_output="vb_agent_headset",
                              customer_input="bogus-line", customer_output="vb_customer_out"))
    message = str(e.value)
    assert "--customer-input: 'bogus-line' matches no input device" in message
    assert "vb_customer_line" in message and "--list-devices" in message


# --- the command --------------------------------------------------------------------------------------


@pytest.mark.sound
def test_softphone_command_lists_the_desk_devices(desk: PulseDesk) -> None:
    out = subprocess.run([VOICEBOT, "softphone", "--list-devices"], env=desk.env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert all(name in out.stdout for name in SINKS) and "default input" in out.stdout


def test_softphone_command_without_any_sound_device_says_how_to_pick(tmp_path: Path) -> None:
    if Path("/dev/snd").exists():
        pytest.skip("this machine has a sound card, so PortAudio always lists devices")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path), "PULSE_SERVER": f"unix:{tmp_path}/no-server"}
    out = subprocess.run([VOICEBOT, "softphone", "--customer-input", "line", "--customer-output", "line"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "PortAudio lists no sound devices" in out.stderr
    assert "--agent-input" in out.stderr and "--list-devices" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.sound
@pytest.mark.model
def test_softphone_command_prints_events_until_the_agent_quits(desk: PulseDesk, tmp_path: Path) -> None:
    db = tmp_path / "desk.db"
    cmd = [VOICEBOT, "softphone", *DESK_ARGS, "--tz", noon_zone(), "--agent-id", "desk-7", "--db", str(db)]
    with subprocess.Popen(cmd, env=desk.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        first = json.loads(proc.stdout.readline())
        assert first["type"] == "call_start" and first["adapter"] == "softphone" and first["agent_id"] == "desk-7"
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    last = json.loads(rest.splitlines()[-1])
    assert last["type"] == "call_end" and last["reason"] == "the agent left the desk"
    with AuditLog.open(db) as log:
        records = list(log.records())
    assert [r.kind for r in records] == ["call_start", "call_end"] and records[0].actor == "desk-7"
