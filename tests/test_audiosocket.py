"""Asterisk AudioSocket: frame parsing, and calls from emulated Asterisk channels.

Asterisk cannot be installed on this machine kind: each peer is an asyncio TCP client that speaks AudioSocket
as Asterisk's AudioSocket() application does (UUID first, then 20 ms slin frames in real time; a hang-up closes).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from live_peers import SLIN_SILENCE as SILENCE
from live_peers import AsteriskChannel, call_records, next_event, open_call, slin_packets

from asr.codecs import read_audio_file
from voicebot.adapters.audiosocket_frames import (
    MAX_PAYLOAD_BYTES,
    AudioSocketFrame,
    Kind,
    ProtocolError,
    parse_frames,
    serialize_frame,
)
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import AUDIOSOCKET, BOARD

# --- framing ---------------------------------------------------------------------------------------


def test_serialize_frame_is_byte_exact() -> None:
    assert serialize_frame(Kind.HANGUP) == b"\x00\x00\x00"
    assert serialize_frame(Kind.UUID, bytes(range(16))) == b"\x01\x00\x10" + bytes(range(16))
    assert serialize_frame(Kind.DTMF, b"5") == b"\x03\x00\x015"
    assert serialize_frame(Kind.AUDIO, b"\x01\x02" * 160) == b"\x10\x01\x40" + b"\x01\x02" * 160
    assert serialize_frame(Kind.ERROR, b"\x02") == b"\xff\x00\x01\x02"


def test_parse_frames_takes_complete_frames_and_leaves_a_partial_one() -> None:
    wire = serialize_frame(Kind.UUID, bytes(16)) + serialize_frame(Kind.AUDIO_16K, b"\x00\x01" * 320)
    buffer = bytearray(wire + serialize_frame(Kind.DTMF, b"#")[:2])
    assert parse_frames(buffer) == [AudioSocketFrame(Kind.UUID, bytes(16)),
                                    AudioSocketFrame(Kind.AUDIO_16K, b"\x00\x01" * 320)]
    assert buffer == b"\x03\x00"
    buffer += b"\x01#"
    assert parse_frames(buffer) == [AudioSocketFrame(Kind.DTMF, b"#")]
    assert buffer == b""


@pytest.mark.parametrize("wire, fatal", [
    (b"\x42\x00\x00", True),
    (b"\x10" + (MAX_PAYLOAD_BYTES + 1).to_bytes(2, "big"), True),
    (b"\x01\x00\x03abc", False),
    (b"\x03\x00\x01x", False),
    (b"\x10\x00\x03abc", False),
    (b"\x13\x00\x02ab", False),
])
def test_parse_frames_refuses_malformed_frames(wire: bytes, fatal: bool) -> None:
    buffer = bytearray(wire)
    with pytest.raises(ProtocolError) as refused:
        parse_frames(buffer)
    assert refused.value.fatal is fatal
    assert buffer == (wire if fatal else b""), "a bad frame of known length is consumed; a fatal one is not"


def test_parse_frames_refuses_rates_other_than_8_and_16_khz_with_a_clear_message() -> None:
    with pytest.raises(ProtocolError, match="24000 Hz is not supported; set the channel to slin"):
        parse_frames(bytearray(serialize_frame(Kind.AUDIO_24K, bytes(960))))


def test_parse_frames_returns_good_frames_before_a_bad_one() -> None:
    buffer = bytearray(serialize_frame(Kind.AUDIO, bytes(320)) + b"\x42\x00\x00")
    assert parse_frames(buffer) == [AudioSocketFrame(Kind.AUDIO, bytes(320))]
    with pytest.raises(ProtocolError):
        parse_frames(buffer)


@given(st.binary(max_size=400))
def test_parse_frames_only_ever_raises_protocol_error(data: bytes) -> None:
    buffer = bytearray(data)
    for _ in range(len(data) + 1):
        try:
            if not parse_frames(buffer):
                break
        except ProtocolError as e:
            if e.fatal:
                break


FRAMES = st.one_of(
    st.just(AudioSocketFrame(Kind.HANGUP)),
    st.binary(min_size=16, max_size=16).map(lambda b: AudioSocketFrame(Kind.UUID, b)),
    st.sampled_from(b"0123456789*#ABCD").map(lambda d: AudioSocketFrame(Kind.DTMF, bytes([d]))),
    st.tuples(st.sampled_from([Kind.AUDIO, Kind.AUDIO_16K]), st.binary(max_size=200))
    .map(lambda t: AudioSocketFrame(t[0], t[1][: len(t[1]) // 2 * 2])),
    st.binary(max_size=4).map(lambda b: AudioSocketFrame(Kind.ERROR, b)),
)


@given(st.lists(FRAMES, max_size=8), st.lists(st.integers(1, 64), max_size=20))
def test_parse_frames_reads_any_split_of_a_valid_stream(frames: list[AudioSocketFrame], cuts: list[int]) -> None:
    wire = b"".join(serialize_frame(f.kind, f.payload) for f in frames)
    buffer, got, at = bytearray(), [], 0
    for size in [*cuts, len(wire)]:
        buffer += wire[at : at + size]
        at += size
        got += parse_frames(buffer)
    assert got == frames and buffer == b""


# --- emulated Asterisk channels ---------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client, config, engines, tmp_path: Path, midday_zone: str):
    """The whole server with its AudioSocket listener on a free port."""
    serve = ServeConfig(db=tmp_path / "v.db", media_token="x" * 32, audiosocket_port=0, zones=(midday_zone,))
    return await aiohttp_client(create_app(config, serve, engines))


@pytest.mark.model
async def test_threat_hangs_up_both_legs_emulated_asterisk_peer(client, engines, shared: Path) -> None:
    events = client.server.app[BOARD].listen()
    (agent, customer), call_id = await open_call(client.server.app, events)
    threat = slin_packets(shared / "audio" / "tts-cmn" / "a11.wav") + [SILENCE] * 500
    sent, _ = await asyncio.gather(agent.play(threat), customer.play([SILENCE] * 500))
    end = await next_event(events, "call_end")
    await asyncio.gather(agent.closed.wait(), customer.closed.wait())

    assert sent < len(threat), "the server hung up before the agent ran out of audio"
    assert agent.heard[-1] == customer.heard[-1] == AudioSocketFrame(Kind.HANGUP)
    assert customer.audio[:10] == threat[:10], "in-path, the agent's audio is relayed to the customer"
    records = call_records(engines, call_id)
    assert end["reason"].startswith("hangup: gang")
    assert records[0].kind == "call_start" and records[0].data["adapter"] == "audiosocket"
    flag = next(r for r in records if r.kind == "flag")
    assert (flag.data["rule"], flag.data["leg"]) == ("cn.threat.gang", "agent")
    action = next(r for r in records if r.kind == "action")
    assert (action.data["action"], action.data["by"]) == ("hangup", "adapter")
    assert records[-1].kind == "call_end"


@pytest.mark.model
async def test_profanity_mutes_the_agent_relay_emulated_asterisk_peer(client, engines, shared: Path) -> None:
    events = client.server.app[BOARD].listen()
    (agent, customer), call_id = await open_call(client.server.app, events)
    listener = asyncio.create_task(next_event(events, "action"))
    customer_side = asyncio.create_task(customer.play([SILENCE] * 1000))
    await agent.play(slin_packets(shared / "audio" / "tts-cmn" / "a13.wav") + [SILENCE] * 100)
    action = await listener
    lawful = slin_packets(shared / "audio" / "tts-cmn" / "b01.wav")
    heard_before = len(customer.heard)
    await agent.play(lawful)
    await asyncio.sleep(0.2)
    await agent.hang_up()
    end = await next_event(events, "call_end")
    customer_side.cancel()

    assert (action["action"], action["leg"]) == ("mute", "agent")
    after = [f.payload for f in customer.heard[heard_before:] if f.kind is Kind.AUDIO]
    assert not set(after) & set(lawful), "none of the muted agent's audio reaches the customer"
    assert len(after) > len(lawful) // 2 and set(after) == {SILENCE}, "the customer hears silence instead"
    assert end["reason"] == "agent leg hung up"
    assert customer.heard[-1] == AudioSocketFrame(Kind.HANGUP)
    kinds = [(r.kind, r.data.get("action")) for r in call_records(engines, call_id)]
    assert ("action", "mute") in kinds and kinds[-1] == ("call_end", None)


@pytest.mark.model
async def test_caller_hang_up_ends_the_call_emulated_asterisk_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    (agent, customer), call_id = await open_call(client.server.app, events)
    await asyncio.gather(agent.play([SILENCE] * 25), customer.play([SILENCE] * 25))
    customer.send(Kind.DTMF, b"5")
    await customer.hang_up()
    end = await next_event(events, "call_end")
    await agent.closed.wait()

    assert end["reason"] == "customer leg hung up"
    assert agent.heard[-1] == AudioSocketFrame(Kind.HANGUP), "the agent's channel is hung up too"
    records = call_records(engines, call_id)
    assert [r.kind for r in records] == ["call_start", "call_end"]
    assert records[-1].data["duration_s"] >= 0.5
    assert records[-1].data["recordings"] == [f"{call_id}.vrec"]
    assert engines.recordings.open_audio(call_id).complete


@pytest.mark.model
async def test_garbage_frame_closes_only_its_call_emulated_asterisk_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    (broken,), broken_id = await open_call(client.server.app, events, legs=1)
    (healthy,), healthy_id = await open_call(client.server.app, events, legs=1)
    await asyncio.gather(broken.play([SILENCE] * 10), healthy.play([SILENCE] * 10))
    broken.send(Kind.AUDIO, b"\x01")
    broken.writer.write(b"\x42\x00\x02zz")
    ended = await next_event(events, "call_end")
    await broken.closed.wait()
    await healthy.play([SILENCE] * 25)
    healthy.send(Kind.HANGUP)
    ended_later = await next_event(events, "call_end")

    assert (ended["call_id"], ended["reason"]) == (broken_id, "protocol error on the agent leg")
    assert broken.heard[-1] == AudioSocketFrame(Kind.ERROR, b"\x02")
    assert (ended_later["call_id"], ended_later["reason"]) == (healthy_id, "agent leg hung up")
    assert ended_later["duration_s"] == pytest.approx(0.7)
    assert [r.kind for r in call_records(engines, broken_id)] == ["call_start", "call_end"]


@pytest.mark.model
async def test_connection_without_uuid_or_a_third_leg_is_refused_emulated_asterisk_peer(client) -> None:
    events = client.server.app[BOARD].listen()
    port = client.server.app[AUDIOSOCKET].port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(serialize_frame(Kind.AUDIO, SILENCE))
    assert await reader.read() == serialize_frame(Kind.ERROR, b"\x02"), "the first frame must name the call"
    writer.close()

    call_uuid = uuid.uuid4()
    (agent, _customer), call_id = await open_call(client.server.app, events, call_uuid)
    third = await AsteriskChannel.connect(port, call_uuid)
    await third.closed.wait()
    await agent.play([SILENCE] * 5)
    await agent.hang_up()
    end = await next_event(events, "call_end")

    assert third.heard == [AudioSocketFrame(Kind.ERROR, b"\x02")]
    assert (end["call_id"], end["reason"]) == (call_id, "agent leg hung up")


@pytest.mark.model
async def test_16_khz_channel_is_supervised_emulated_asterisk_peer(client, shared: Path) -> None:
    events = client.server.app[BOARD].listen()
    port = client.server.app[AUDIOSOCKET].port
    channel = await AsteriskChannel.connect(port, uuid.uuid4())
    await next_event(events, "call_start")
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "a13.wav").channels[0].astype("<i2").tobytes()
    audio += bytes(32000)
    for i in range(0, len(audio) - 639, 640):
        channel.send(Kind.AUDIO_16K, audio[i : i + 640])
    flag = await next_event(events, "flag")
    await channel.hang_up()
    end = await next_event(events, "call_end")

    assert flag["rule"] == "cn.obscene.profanity"
    assert end["duration_s"] >= 2.8


@pytest.mark.model
async def test_supervisor_warn_beeps_the_agent_emulated_asterisk_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    (agent, customer), call_id = await open_call(client.server.app, events)
    heard_before = len(agent.heard)
    client.server.app[BOARD].calls[call_id].act("warn", actor="supervisor-1", reason="tone down", leg="agent")
    await next_event(events, "action")
    await asyncio.gather(agent.play([SILENCE] * 30), customer.play([SILENCE] * 30))
    await customer.hang_up()
    await next_event(events, "call_end")

    beep = [p for p in agent.audio[heard_before:] if p != SILENCE]
    assert len(beep) == 15 and all(len(p) == 320 for p in beep), "a 300 ms beep in 20 ms frames"
    assert customer.audio.count(SILENCE) == len(customer.audio), "only the agent hears the warning"


@pytest.mark.model
async def test_tap_mode_relays_nothing_and_only_audits_emulated_asterisk_peer(aiohttp_client, config, engines,
                                                                             tmp_path: Path, midday_zone: str) -> None:
    serve = ServeConfig(db=tmp_path / "v.db", media_token="x" * 32, audiosocket_port=0, mode="tap",
                        zones=(midday_zone,))
    client = await aiohttp_client(create_app(config, serve, engines))
    events = client.server.app[BOARD].listen()
    port, call_uuid = client.server.app[AUDIOSOCKET].port, uuid.uuid4()
    agent = await AsteriskChannel.connect(port, call_uuid)
    call_id = (await next_event(events, "call_start"))["call_id"]
    customer = await AsteriskChannel.connect(port, call_uuid)
    client.server.app[BOARD].calls[call_id].act("hangup", actor="supervisor-1", reason="test")
    await next_event(events, "action")
    await asyncio.gather(agent.play([b"\x01\x00" * 160] * 25), customer.play([b"\x02\x00" * 160] * 25))
    await agent.hang_up()
    end = await next_event(events, "call_end")

    assert end["reason"] == "agent leg hung up"
    assert customer.heard == [AudioSocketFrame(Kind.HANGUP)], "a tap sends no audio; the call ends with its channel"
    action = next(r for r in call_records(engines, call_id) if r.kind == "action")
    assert (action.data["action"], action.data["by"]) == ("hangup", "pbx")


@pytest.mark.model
async def test_only_the_agent_legs_peer_may_join_its_call_emulated_asterisk_peer(client) -> None:
    events = client.server.app[BOARD].listen()
    call_uuid = uuid.uuid4()
    (agent,), call_id = await open_call(client.server.app, events, call_uuid, legs=1)
    port = client.server.app[AUDIOSOCKET].port
    intruder = await AsteriskChannel.connect(port, call_uuid, source="127.0.0.2")  # another local process's address
    async with asyncio.timeout(10):
        await intruder.closed.wait()
    assert intruder.heard[-1].kind is Kind.ERROR and call_id in client.server.app[BOARD].calls
    customer = await AsteriskChannel.connect(port, call_uuid)
    customer.send(Kind.AUDIO, SILENCE)
    async with asyncio.timeout(10):
        await agent.heard_any.wait()  # the real customer leg, from the agent leg's peer, is bridged
    await agent.hang_up()
    await next_event(events, "call_end")


async def test_a_peer_outside_the_configured_ones_is_refused(aiohttp_client, config, engines, tmp_path: Path) -> None:
    serve = ServeConfig(db=tmp_path / "v.db", media_token="x" * 32, audiosocket_port=0,
                        audiosocket_peers=("127.0.0.3",))
    app = (await aiohttp_client(create_app(config, serve, engines))).server.app
    stranger = await AsteriskChannel.connect(app[AUDIOSOCKET].port, uuid.uuid4())
    async with asyncio.timeout(10):
        await stranger.closed.wait()
    assert [f.kind for f in stranger.heard] == [Kind.ERROR] and not app[BOARD].calls
