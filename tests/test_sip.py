"""The SIP/RTP adapter against real peers on 127.0.0.1: sipp, kamailio and the baresip CLI call it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from voicebot.adapters.sip import (
    SIP_ADAPTER,
    SIP_SETTINGS,
    ProtocolError,
    SipConfigError,
    SipSettings,
    check_forward_template,
    end_reason,
    fill_forward_uri,
    parse_call_headers,
    parse_listen,
    silence_due,
)
from voicebot.config import Config, ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import BOARD

SIP_DIR = Path(__file__).parent / "sip"
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SHANGHAI = "X-Debtor-TZ: Asia/Shanghai"
PEERS = ("sipp", "kamailio", "baresip", "sox")
needs_peers = pytest.mark.skipif(not all(shutil.which(p) for p in PEERS), reason="needs sipp, kamailio, baresip, sox")


# --- pure helpers (no peers) -----------------------------------------------------------------------

def test_call_headers_name_the_leg_group_zones_and_agent() -> None:
    h = parse_call_headers({"x-voicebot-leg": "Customer", "X-Voicebot-Call": "fork-1",
                            "X-Debtor-TZ": "Asia/Shanghai, UTC", "X-Agent-Id": "a7", "To": "<sip:5551234@pbx>"})
    assert (h.leg, h.group, h.zones, h.agent_id) == ("customer", "fork-1", ("Asia/Shanghai", "UTC"), "a7")
    assert parse_call_headers({}).leg == "agent"
    with pytest.raises(ProtocolError):
        parse_call_headers({"X-Voicebot-Leg": "boss"})


@given(st.dictionaries(st.sampled_from(["X-Voicebot-Leg", "X-Voicebot-Call", "X-Debtor-TZ", "X-Agent-Id", "To"]),
                       st.text(max_size=80)))
def test_header_parser_raises_only_protocol_error(headers: dict[str, str]) -> None:
    with contextlib.suppress(ProtocolError):
        parse_call_headers(headers)


@given(st.text(max_size=40), st.text(max_size=60))
def test_forward_uri_raises_only_protocol_error(user: str, to: str) -> None:
    for header in (to, f"<sip:{user}@pbx.example>"):
        with contextlib.suppress(ProtocolError):
            assert fill_forward_uri("sip:{user}@127.0.0.1:5070", header).startswith("sip:")


@given(st.text(max_size=40))
def test_listen_parser_raises_only_config_error(value: str) -> None:
    with contextlib.suppress(SipConfigError):
        host, port = parse_listen(value)
        assert host and 0 < port < 65535


def test_settings_parsers_and_reasons() -> None:
    assert parse_listen("127.0.0.1:5080") == ("127.0.0.1", 5080) and parse_listen("[::1]:5080") == ("::1", 5080)
    assert fill_forward_uri("sip:{user}@127.0.0.1:5070", "bob <sip:1001@10.0.0.1:5060>") == "sip:1001@127.0.0.1:5070"
    with pytest.raises(SipConfigError):
        check_forward_template("sip:{host}@x")
    with pytest.raises(SipConfigError):
        check_forward_template("http://x/{user}")
    assert silence_due(1600, 0.3, 8000) == 0 and silence_due(0, 1.0, 8000) == 6400
    assert end_reason("rtp stream error") == "rtp timeout"
    assert end_reason("Connection reset by peer [104]") == "remote hang-up"


# --- peers and ports ---------------------------------------------------------------------------------

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


@pytest.fixture(scope="session")
def phone_audio(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test utterances as 8 kHz μ-law WAV (for sipp) and 8 kHz PCM WAV (for baresip's aufile)."""
    out = tmp_path_factory.mktemp("phone")
    files = {}
    for name in ("a11", "b01", "b02"):
        src = shared / "audio" / "tts-cmn" / f"{name}.wav"
        files[name] = out / f"{name}_ulaw.wav"
        subprocess.run(["sox", str(src), "-r", "8000", "-e", "u-law", "-b", "8", str(files[name])], check=True,
                       stderr=subprocess.DEVNULL)
        files[f"{name}_pcm"] = out / f"{name}_pcm.wav"
        subprocess.run(["sox", str(src), "-r", "8000", "-e", "signed", "-b", "16", str(files[f"{name}_pcm"])],
                       check=True, stderr=subprocess.DEVNULL)
    return files


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


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    """Start real SIP peers; they are stopped after the test."""
    p = Peers(tmp_path)
    yield p
    await p.stop()


async def finished(proc: asyncio.subprocess.Process, timeout_s: float = 45) -> int:
    """The exit code of a peer, once it has exited."""
    return await asyncio.wait_for(proc.wait(), timeout_s)


@dataclass
class Server:
    """The voicebot app, in this process, with its SIP user agent listening on `port`."""

    app: web.Application
    port: int
    events: asyncio.Queue

    @property
    def uri(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def idle(self, timeout_s: float = 10) -> None:
        """Wait until the adapter holds no SIP call."""
        async with asyncio.timeout(timeout_s):
            while self.app[SIP_ADAPTER].live_calls:
                await asyncio.sleep(0.05)

    async def next(self, kind: str, timeout_s: float = 30) -> dict:
        """The next event of this kind from any call."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.events.get()
                if event["type"] == kind:
                    return event


def pinned_clock() -> Callable[[], datetime]:
    """Noon in Shanghai, running at real speed: calls are inside the calling window whenever the test runs."""
    t0 = time.monotonic()
    return lambda: NOON + timedelta(seconds=time.monotonic() - t0)


@pytest.fixture
async def serve(engines, config: Config, tmp_path: Path, aiohttp_client) -> Callable[..., object]:
    """Start the app (real model, fresh audit log) with SIP on a free port; keyword arguments go to ServeConfig."""

    async def start(**options: object) -> Server:
        port = sip_port()
        serve_config = ServeConfig(db=tmp_path / "voicebot.db", media_token="sip-test-token-0123456789",
                                   sip_listen=f"127.0.0.1:{port}", zones=("Asia/Shanghai",), **options)
        app = create_app(config, serve_config, engines)
        app[SIP_SETTINGS] = SipSettings(rtp_timeout_s=2, clock=pinned_clock())
        events = app[BOARD].listen(maxsize=0)
        await aiohttp_client(app)
        return Server(app=app, port=port, events=events)

    return start


def records(engines, call_id: str) -> list:
    """The audit records of one call."""
    return [r for r in engines.audit.records() if r.call_id == call_id]


def live_test(fn):
    """Mark a test that runs real SIP peers and the real model."""
    for mark in (pytest.mark.sip, pytest.mark.model, needs_peers):
        fn = mark(fn)
    return fn


# --- live calls --------------------------------------------------------------------------------------

def kinds(recs: list) -> list[str]:
    return [r.kind for r in recs]


def assert_threat_hung_up(recs: list) -> dict:
    """The audit trail of a call whose agent threatened: gang flag, engine hang-up, call_end; returns the action."""
    assert recs[0].kind == "call_start" and recs[-1].kind == "call_end"
    flag = next(r for r in recs if r.kind == "flag" and r.data["category"] == "gang")
    action = next(r for r in recs if r.kind == "action" and r.data["action"] == "hangup")
    assert flag.data["leg"] == "agent" and action.seq > flag.seq and action.actor == "engine"
    assert recs[-1].data["reason"].startswith("hangup")
    return action.data


@live_test
async def test_sipp_caller_threatening_is_hung_up(serve, peers: Peers, phone_audio, engines, tmp_path: Path) -> None:
    server = await serve()
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a11"],
                    HEADERS=f"\n      {SHANGHAI}\n      X-Agent-Id: agent-7")
    sipp = await peers.sipp("sipp", scenario, server.uri, "-s", "4001")
    start = await server.next("call_start")
    hangup = await server.next("action")
    rc = await finished(sipp)
    assert rc == 0, peers.log("sipp")
    end = await server.next("call_end")
    assert end["reason"].startswith("hangup")
    await server.idle()
    assert start["agent_id"] == "agent-7" and start["zones"] == ["Asia/Shanghai"] and start["adapter"] == "sip"
    action = assert_threat_hung_up(records(engines, start["call_id"]))
    assert action["action"] == hangup["action"] == "hangup"
    print(json.dumps({"metric": "threat_end_to_bye_ms", "value": hangup["delay_ms"], "unit": "ms",
                      "path": "sipp->voicebot"}))


async def kamailio(peers: Peers, target_port: int) -> int:
    """Start kamailio as a stateful proxy to 127.0.0.1:target_port; returns its port once it answers."""
    port = free_port()
    rundir = peers.workdir / "kamailio"
    rundir.mkdir()
    await peers.start("kamailio", "kamailio", "-DD", "-E", "-f", str(SIP_DIR / "kamailio.cfg"),
                      "-l", f"udp:127.0.0.1:{port}", "-A", f'TARGET="sip:127.0.0.1:{target_port}"',
                      "-Y", str(rundir), "-w", str(rundir), "-m", "32", "-M", "4", "-n", "1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        options = (f"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{s.getsockname()[1]};"
                   "branch=z9hG4bK-ping\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n"
                   "Call-ID: ping\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        for _ in range(50):
            s.sendto(options, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                if s.recv(4096).startswith(b"SIP/2.0"):
                    return port
            await asyncio.sleep(0.1)
    raise AssertionError(f"kamailio did not answer:\n{peers.log('kamailio')}")


@live_test
async def test_threat_through_kamailio_is_hung_up(serve, peers: Peers, phone_audio, engines, tmp_path: Path) -> None:
    server = await serve()
    proxy = await kamailio(peers, server.port)
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a11"], HEADERS="")
    sipp = await peers.sipp("sipp", scenario, f"127.0.0.1:{proxy}", "-s", "4002")
    start = await server.next("call_start")
    assert await finished(sipp) == 0, peers.log("sipp") + peers.log("kamailio")
    await server.next("call_end")
    assert_threat_hung_up(records(engines, start["call_id"]))


class BaresipControl:
    """The baresip CLI's ctrl_tcp interface: netstring-framed JSON commands, responses and events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> BaresipControl:
        for _ in range(50):
            with contextlib.suppress(OSError):
                return cls(*await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.1)
        raise AssertionError("baresip's ctrl_tcp never listened")

    async def send(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(b"%d:%s," % (len(body), body))
        await self.writer.drain()

    async def event(self, kind: str, timeout_s: float = 30) -> dict:
        """The next event of this type (CALL_ESTABLISHED, CALL_CLOSED, ...)."""
        async with asyncio.timeout(timeout_s):
            while True:
                size = int((await self.reader.readuntil(b":"))[:-1])
                message = json.loads((await self.reader.readexactly(size + 1))[:-1])
                if message.get("event") and message.get("type") == kind:
                    return message

    def close(self) -> None:
        self.writer.close()


async def baresip_caller(peers: Peers, audio: Path) -> BaresipControl:
    """Start the baresip CLI speaking `audio` (8 kHz PCM WAV, the call ends when it does) and connect to it."""
    home = peers.workdir / "baresip"
    home.mkdir()
    sip, ctrl = sip_port(), free_port(udp=(), tcp=(0,))
    fill("baresip.conf", home / "config", SIP_PORT=sip, CTRL_PORT=ctrl, AUDIO=audio)
    fill("baresip.accounts", home / "accounts", SIP_PORT=sip)
    await peers.start("baresip", "baresip", "-f", str(home))
    return await BaresipControl.connect(ctrl)


@live_test
async def test_baresip_lawful_call_with_dtmf_ends_on_its_hangup(serve, peers: Peers, phone_audio, engines) -> None:
    server = await serve()
    control = await baresip_caller(peers, phone_audio["b01_pcm"])
    await control.send("dial", f"sip:4003@{server.uri}")
    start = await server.next("call_start")
    pressed: list[tuple[str, str]] = []
    call = server.app[BOARD].calls[start["call_id"]]
    press = call.press
    call.press = lambda leg, digit: (pressed.append((leg, digit)), press(leg, digit))[-1]
    await control.event("CALL_ESTABLISHED")
    await control.send("sndcode", "7")
    dtmf = await server.next("dtmf")
    closed = await control.event("CALL_CLOSED")
    end = await server.next("call_end")
    control.close()
    assert closed["param"] == "end of file" and end["reason"] == "remote hang-up"
    assert dtmf["leg"] == "agent" and pressed == [("agent", "7")]
    recs = records(engines, start["call_id"])
    assert kinds(recs)[0] == "call_start" and kinds(recs)[-1] == "call_end"
    assert not [r for r in recs if r.kind in ("flag", "action")]
    assert 5.0 < recs[-1].data["duration_s"] < 9.0


@live_test
async def test_bridged_threat_hangs_up_both_legs(serve, peers: Peers, phone_audio, engines, tmp_path: Path) -> None:
    customer_port = free_port()
    server = await serve(sip_forward=f"sip:{{user}}@127.0.0.1:{customer_port}")
    customer = await peers.sipp("customer", None, "", port=customer_port)
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a11"], HEADERS="")
    agent = await peers.sipp("agent", scenario, server.uri, "-s", "4004")
    start = await server.next("call_start")
    recording = server.app[BOARD].calls[start["call_id"]].recording
    hangup = await server.next("action")
    assert await finished(agent) == 0, peers.log("agent")
    assert await finished(customer) == 0, peers.log("customer")
    await server.next("call_end")
    assert_threat_hung_up(records(engines, start["call_id"]))
    assert hangup["action"] == "hangup"
    echoed, _ = sf.read(recording.path("customer"), dtype="int16")
    assert len(echoed) > 2 * 8000 and np.abs(echoed).max() > 3000, "the agent's audio did not cross the bridge"
    print(json.dumps({"metric": "threat_end_to_bye_ms", "value": hangup["delay_ms"], "unit": "ms",
                      "path": "sipp->voicebot->sipp (bridged)"}))
