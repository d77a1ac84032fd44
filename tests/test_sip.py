"""The SIP/RTP adapter against real peers on 127.0.0.1: sipp, kamailio and the baresip CLI call it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from live_peers import SIP_DIR, Peers, assert_threat_hung_up, fill, finished, free_port, listening, sip_port

from voicebot.adapters.sip import (
    ProtocolError,
    SipConfigError,
    SipSettings,
    check_forward_template,
    fill_forward_uri,
    parse_call_headers,
    parse_listen,
)
from voicebot.adapters.sip_session import end_reason, silence_due
from voicebot.config import Config, ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import BOARD, ENGINES, SIP_ADAPTER, SIP_SETTINGS

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


def test_identity_verified_header_is_yes_or_no() -> None:
    assert parse_call_headers({"x-identity-verified": "Yes"}).verified is True
    assert parse_call_headers({"X-Identity-Verified": "no"}).verified is False
    assert parse_call_headers({}).verified is False
    with pytest.raises(ProtocolError):
        parse_call_headers({"X-Identity-Verified": "1"})


@given(st.dictionaries(st.sampled_from(["X-Voicebot-Leg", "X-Voicebot-Call", "X-Debtor-TZ", "X-Agent-Id",
                                        "X-Identity-Verified", "To"]),
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


# --- the app with SIP on a free port -----------------------------------------------------------------

@dataclass
class Server:
    """The voicebot app, in this process, with its SIP user agent listening on `port`."""

    app: web.Application
    client: object
    port: int
    events: asyncio.Queue
    seen: list[dict] = field(default_factory=list)

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
                self.seen.append(event)
                if event["type"] == kind:
                    return event


def pinned_clock() -> Callable[[], datetime]:
    """Noon in Shanghai, running at real speed: calls are inside the calling window whenever the test runs."""
    t0 = time.monotonic()
    return lambda: NOON + timedelta(seconds=time.monotonic() - t0)


@pytest.fixture
async def serve(engines, config: Config, tmp_path: Path, aiohttp_client) -> Callable[..., object]:
    """Start the app (real model, fresh audit log) with SIP on a free port; keyword arguments go to ServeConfig."""

    async def start(settings: SipSettings | None = None, **options: object) -> Server:
        port = sip_port()
        serve_config = ServeConfig(db=tmp_path / "voicebot.db", media_token="sip-test-token-0123456789",
                                   sip_listen=f"127.0.0.1:{port}", zones=("Asia/Shanghai",), **options)
        app = create_app(config, serve_config, engines)
        app[SIP_SETTINGS] = settings or SipSettings(rtp_timeout_s=5, clock=pinned_clock())
        events = app[BOARD].listen(maxsize=0)
        client = await aiohttp_client(app)
        return Server(app=app, client=client, port=port, events=events)

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

@live_test
async def test_sipp_caller_threatening_is_hung_up(serve, peers: Peers, phone_audio, engines, tmp_path: Path) -> None:
    server = await serve()
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a11"],
                    HEADERS=f"\n      {SHANGHAI}\n      X-Agent-Id: agent-7")
    sipp = await peers.sipp("sipp", scenario, server.uri, "-s", "4001")
    start = await server.next("call_start")
    audio_wall_s = server.app[BOARD].calls[start["call_id"]].audio_wall_s
    hangup = await server.next("action")
    bye_wall_s = time.monotonic()  # Enforce has handed the BYE to the stack before the action is published
    rc = await finished(sipp)
    assert rc == 0, peers.log("sipp")
    end = await server.next("call_end")
    assert end["reason"].startswith("hangup")
    await server.idle()
    assert start["agent_id"] == "agent-7" and start["zones"] == ["Asia/Shanghai"] and start["adapter"] == "sip"
    action = assert_threat_hung_up(records(engines, start["call_id"]))
    assert action["action"] == hangup["action"] == "hangup"
    phrase_s = sf.info(phone_audio["a11"]).duration
    print(json.dumps({"metric": "matched_words_end_to_bye_ms", "value": hangup["delay_ms"], "unit": "ms",
                      "path": "sipp->voicebot"}))
    print(json.dumps({"metric": "phrase_end_to_bye_ms", "value": round((bye_wall_s - audio_wall_s(phrase_s)) * 1000),
                      "unit": "ms", "path": "sipp->voicebot", "phrase_s": round(phrase_s, 2)}))


async def kamailio(peers: Peers, config: Path, **defines: str) -> int:
    """Start kamailio with `config` and its `defines` (-A NAME="value", or NAME=value for a number); returns its port
    once it answers."""
    port = free_port()
    rundir = peers.workdir / "kamailio"
    rundir.mkdir()
    await peers.start("kamailio", "kamailio", "-DD", "-E", "-f", str(config), "-l", f"udp:127.0.0.1:{port}",
                      *(arg for name, value in defines.items()
                        for arg in ("-A", f"{name}={value}" if value.isdigit() else f'{name}="{value}"')),
                      "-Y", str(rundir), "-w", str(rundir), "-m", "32", "-M", "4",
                      "-n", "1")  # one worker: sipp wants a call's replies in the order they were sent
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
    proxy = await kamailio(peers, SIP_DIR / "kamailio.cfg", TARGET=f"sip:127.0.0.1:{server.port}")
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
    assert recs[0].kind == "call_start" and recs[-1].kind == "call_end"
    assert not [r for r in recs if r.kind in ("flag", "action")]
    assert 5.0 < recs[-1].data["duration_s"] < 9.0


@live_test
async def test_bridged_threat_hangs_up_both_legs(serve, peers: Peers, phone_audio, engines, tmp_path: Path) -> None:
    customer_port = free_port()
    server = await serve(sip_forward=f"sip:{{user}}@127.0.0.1:{customer_port}")
    customer = await peers.sipp("customer", None, "", port=customer_port)
    await listening(customer_port)
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a11"], HEADERS="")
    agent = await peers.sipp("agent", scenario, server.uri, "-s", "4004")
    start = await server.next("call_start")
    hangup = await server.next("action")
    assert await finished(agent) == 0, peers.log("agent")
    assert await finished(customer) == 0, peers.log("customer")
    await server.next("call_end")
    assert_threat_hung_up(records(engines, start["call_id"]))
    assert hangup["action"] == "hangup"
    echoed = engines.recordings.open_audio(start["call_id"]).frames[:, 1]  # the customer leg
    assert len(echoed) > 2 * 8000 and np.abs(echoed).max() > 3000, "the agent's audio did not cross the bridge"
    print(json.dumps({"metric": "matched_words_end_to_bye_ms", "value": hangup["delay_ms"], "unit": "ms",
                      "path": "sipp->voicebot->sipp (bridged)"}))


GARBAGE = (
    b"\x00\xff\x13\x37" * 64,
    b"INVITE sip:x SIP/2.0\r\n\r\n",
    b"INVITE sip:4005@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x\r\nCall-ID: junk\r\n"
    b"CSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 9999\r\n\r\nv=0\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-nope\r\nCSeq: 7 BYE\r\n\r\n",
    ("BYE sip:x@y SIP/2.0\r\nX-Voicebot-Leg: " + "é" * 3000 + "\r\n\r\n").encode(),
)


@live_test
async def test_garbage_then_two_calls_one_hanging_up_early(serve, peers: Peers, phone_audio, engines,
                                                           tmp_path: Path) -> None:
    server = await serve()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in GARBAGE:
            s.sendto(datagram, ("127.0.0.1", server.port))
    lawful = fill("uac_play_bye.xml", tmp_path / "lawful.xml", AUDIO=phone_audio["b02"], HEADERS="", PAUSE_MS=2500)
    threat = fill("uac_play_wait_bye.xml", tmp_path / "threat.xml", AUDIO=phone_audio["a11"], HEADERS="")
    caller = await peers.sipp("lawful", lawful, server.uri, "-s", "4005")
    threatener = await peers.sipp("threat", threat, server.uri, "-s", "4011")
    assert await finished(caller) == 0, peers.log("lawful")
    assert await finished(threatener) == 0, peers.log("threat")
    ends = [await server.next("call_end"), await server.next("call_end")]
    reasons = sorted(e["reason"].split(":")[0] for e in ends)
    assert reasons == ["hangup", "remote hang-up"]
    hung_up_by_caller = next(e for e in ends if e["reason"] == "remote hang-up")
    assert hung_up_by_caller["flags"] == 0
    assert engines.recordings.open_audio(hung_up_by_caller["call_id"]).complete
    assert_threat_hung_up(records(engines, next(e for e in ends if e is not hung_up_by_caller)["call_id"]))


@live_test
async def test_vanished_caller_ends_by_rtp_timeout_and_capacity_refuses(serve, peers: Peers, phone_audio,
                                                                       tmp_path: Path) -> None:
    server = await serve(SipSettings(rtp_timeout_s=2, max_calls=1, clock=pinned_clock()))
    vanish = fill("uac_play_vanish.xml", tmp_path / "vanish.xml", AUDIO=phone_audio["b02"], HEADERS="", PAUSE_MS=500)
    first = await peers.sipp("vanish", vanish, server.uri, "-s", "4006")
    await server.next("call_start")
    bye = fill("uac_play_bye.xml", tmp_path / "bye.xml", AUDIO=phone_audio["b02"], HEADERS="", PAUSE_MS=100)
    refused = await peers.sipp("refused", bye, server.uri, "-s", "4007")
    assert await finished(refused) != 0 and "486" in peers.log("refused")
    assert server.app[SIP_ADAPTER].refused == 1
    assert await finished(first) == 0, peers.log("vanish")
    end = await server.next("call_end")
    assert end["reason"] == "rtp timeout"


@live_test
async def test_an_invite_past_the_servers_capacity_is_refused_while_the_live_call_is_recognised(
        serve, peers: Peers, phone_audio, tmp_path: Path) -> None:
    server = await serve(max_calls=1)
    talk = fill("uac_play_bye.xml", tmp_path / "talk.xml", AUDIO=phone_audio["b02"], HEADERS="", PAUSE_MS=1500)
    first = await peers.sipp("talk", talk, server.uri, "-s", "4012")
    start = await server.next("call_start")
    bye = fill("uac_play_bye.xml", tmp_path / "bye.xml", AUDIO=phone_audio["b02"], HEADERS="", PAUSE_MS=100)
    refused = await peers.sipp("refused", bye, server.uri, "-s", "4013")
    assert await finished(refused) != 0 and "486" in peers.log("refused")
    final = await server.next("final")
    assert await finished(first) == 0, peers.log("talk")
    assert final["call_id"] == start["call_id"] and final["text"]
    assert server.app[ENGINES].admission.refused == 1


@live_test
async def test_an_invite_never_acked_is_hung_up_without_taking_a_call_slot(serve, peers: Peers, tmp_path: Path) -> None:
    server = await serve(max_calls=1)
    silent = fill("uac_no_ack.xml", tmp_path / "no_ack.xml", HEADERS="")
    caller = await peers.sipp("no-ack", silent, server.uri, "-s", "4014")
    assert await finished(caller) == 0, peers.log("no-ack")
    assert not [e for e in server.seen if e["type"] == "call_start"] and server.events.empty()
    assert server.app[ENGINES].admission.live == 0


@live_test
async def test_dialled_call_is_supervised_and_hung_up_by_a_supervisor(serve, peers: Peers, engines) -> None:
    server = await serve()
    port = free_port()
    callee = await peers.sipp("callee", None, "", port=port)
    await listening(port)
    call = await server.app[SIP_ADAPTER].dial(f"sip:4008@127.0.0.1:{port}", zones=("Asia/Shanghai",))
    start = await server.next("call_start")
    assert start["call_id"] == call.call_id and start["mode"] == "in-path"
    call.act("warn", actor="alice", reason="supervisor", leg="customer")
    await server.next("action")
    await asyncio.sleep(1)  # the beep plays and sipp echoes it back to us
    call.act("hangup", actor="alice", reason="supervisor")
    assert await finished(callee) == 0, peers.log("callee")
    end = await server.next("call_end")
    assert end["reason"] == "hangup: supervisor"
    actions = [(r.actor, r.data["action"]) for r in records(engines, call.call_id) if r.kind == "action"]
    assert actions == [("alice", "warn"), ("alice", "hangup")]
    echoed = engines.recordings.open_audio(call.call_id).frames[:, 1]  # the customer leg
    assert np.abs(echoed).max() > 3000, "the warning beep did not reach the callee"


@live_test
async def test_forked_calls_with_one_call_header_are_one_tapped_call(serve, peers: Peers, phone_audio, engines,
                                                                     tmp_path: Path) -> None:
    server = await serve()
    forks = []
    for leg, audio in (("agent", "a11"), ("customer", "b02")):
        headers = f"\n      X-Voicebot-Call: fork-42\n      X-Voicebot-Leg: {leg}\n      {SHANGHAI}"
        scenario = fill("uac_play_bye.xml", tmp_path / f"{leg}.xml", AUDIO=phone_audio[audio], HEADERS=headers,
                        PAUSE_MS=5000)
        forks.append(await peers.sipp(leg, scenario, server.uri, "-s", "4009"))
        if leg == "agent":
            start = await server.next("call_start")
    for fork, leg in zip(forks, ("agent", "customer"), strict=True):
        assert await finished(fork) == 0, peers.log(leg)
    end = await server.next("call_end")
    assert start["mode"] == "tap" and end["reason"] == "remote hang-up" and end["flags"] >= 1
    recs = records(engines, start["call_id"])
    assert [r.kind for r in engines.audit.records()].count("call_start") == 1
    assert any(e["type"] == "final" and e["leg"] == "customer" for e in server.seen)
    assert any(r.kind == "flag" and r.data["category"] == "gang" and r.data["leg"] == "agent" for r in recs)
    assert len(recs[-1].data["recordings"]) == 1
    both_legs = engines.recordings.open_audio(start["call_id"]).frames
    assert np.abs(both_legs[:, 0]).max() > 1000 and np.abs(both_legs[:, 1]).max() > 1000, "a fork's leg is silent"


@live_test
async def test_server_shutdown_hangs_up_live_calls(serve, peers: Peers, phone_audio, engines, tmp_path: Path) -> None:
    server = await serve()
    scenario = fill("uac_play_wait_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["b02"], HEADERS="")
    sipp = await peers.sipp("sipp", scenario, server.uri, "-s", "4010")
    start = await server.next("call_start")
    await server.next("partial")
    await server.client.close()
    assert await finished(sipp) == 0, peers.log("sipp")
    assert records(engines, start["call_id"])[-1].data["reason"] == "server shutdown"


@live_test
async def test_bridged_profanity_mutes_the_agent_towards_the_customer(serve, peers: Peers, phone_audio,
                                                                       engines, shared: Path, tmp_path: Path) -> None:
    customer_port = free_port()
    server = await serve(sip_forward=f"sip:{{user}}@127.0.0.1:{customer_port}")
    customer = await peers.sipp("customer", None, "", port=customer_port)
    await listening(customer_port)
    spoken_s = sf.info(phone_audio["a13b01"]).duration
    scenario = fill("uac_play_bye.xml", tmp_path / "uac.xml", AUDIO=phone_audio["a13b01"], HEADERS="",
                    PAUSE_MS=int(spoken_s * 1000) + 500)
    agent = await peers.sipp("agent", scenario, server.uri, "-s", "4012")
    start = await server.next("call_start")
    call = server.app[BOARD].calls[start["call_id"]]
    mute = await server.next("action")
    assert mute["action"] == "mute" and mute["leg"] == "agent" and call.muted == {"agent"}
    assert await finished(agent) == 0, peers.log("agent")
    assert await finished(customer) == 0, peers.log("customer")
    end = await server.next("call_end")
    assert end["reason"] == "remote hang-up"
    # after the mute the agent's lawful line still reaches us, but the customer hears (and echoes) silence
    a13_s = sf.info(shared / "audio" / "tts-cmn" / "a13.wav").duration
    muted_from_s = max(a13_s, mute["audio_s"] + mute["delay_ms"] / 1000) + 0.5
    opened = engines.recordings.open_audio(call.call_id)
    agent_pcm, echo_pcm, rate = opened.frames[:, 0], opened.frames[:, 1], opened.header.sample_rate
    window = slice(int(muted_from_s * rate), int((spoken_s - 0.5) * rate))
    assert np.abs(agent_pcm[window]).max() > 3000 and np.abs(echo_pcm[window]).max() < 300
    assert np.abs(echo_pcm[: int(a13_s * rate)]).max() > 3000, "the agent was not heard before the mute"
