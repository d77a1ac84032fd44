"""Twilio Media Streams: message parsing and shapes, the token, and calls from an emulated Twilio peer.

Twilio is a cloud service that cannot run here: the peer is an aiohttp WebSocket client sending the message
sequences Twilio documents (connected, start, 20 ms μ-law media, dtmf, mark, stop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path

import pytest
from aiohttp import WSServerHandshakeError
from hypothesis import given
from hypothesis import strategies as st
from live_peers import (
    CALL_SID,
    CONNECTED,
    SID,
    call_records,
    collect,
    media_message,
    next_event,
    send_media,
    start_message,
    ulaw_packets,
)
from live_peers import ULAW_SILENCE as SILENCE

from voicebot.adapters.twilio import MAX_BAD_MESSAGES
from voicebot.adapters.twilio_messages import (
    ProtocolError,
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
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import BOARD

TOKEN = "x" * 32
DTMF = {"event": "dtmf", "streamSid": SID, "sequenceNumber": "2", "dtmf": {"track": "inbound_track", "digit": "1"}}
MARK = {"event": "mark", "streamSid": SID, "sequenceNumber": "3", "mark": {"name": "greeting"}}
STOP = {"event": "stop", "streamSid": SID, "sequenceNumber": "9",
        "stop": {"accountSid": "AC" + "0" * 32, "callSid": CALL_SID}}


# --- parsing and serializing -----------------------------------------------------------------------


def test_parse_message_reads_each_twilio_event() -> None:
    start = parse_message(json.dumps(start_message(["inbound", "outbound"], debtor_tz="Asia/Shanghai")))
    assert start == TwilioStart(stream_sid=SID, call_sid=CALL_SID, account_sid="AC" + "0" * 32,
                                tracks=("inbound", "outbound"), custom_parameters={"debtor_tz": "Asia/Shanghai"})
    media = parse_message(json.dumps(media_message("outbound", 4, 3, b"\x01\x02\xff")))
    assert media == TwilioMedia(stream_sid=SID, track="outbound", chunk=3, timestamp_ms=60, payload=b"\x01\x02\xff")
    assert parse_message(json.dumps(DTMF)) == TwilioDtmf(stream_sid=SID, track="inbound", digit="1")
    assert parse_message(json.dumps(MARK)) == TwilioMark(stream_sid=SID, name="greeting")
    assert parse_message(json.dumps(STOP)) == TwilioStop(stream_sid=SID, call_sid=CALL_SID)


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"event": "hello"}', '{"event": "media", "streamSid": "MZ1"}',
    json.dumps({**media_message("inbound", 1, 1, b"x"), "media": {"track": "inbound", "chunk": "1",
                                                                  "timestamp": "20", "payload": "%%%"}}),
    json.dumps({**media_message("sideways", 1, 1, b"x")}),
    json.dumps({**media_message("inbound", 1, 1, b"x"), "sequenceNumber": "-1"}),
    json.dumps({**DTMF, "dtmf": {"track": "inbound_track", "digit": "12"}}),
])
def test_parse_message_refuses_malformed_messages(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_message(text)


@pytest.mark.parametrize("fmt", [
    {"encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1},
    {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1},
    {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2},
])
def test_parse_message_refuses_other_media_formats_with_a_clear_message(fmt: dict) -> None:
    msg = start_message(["inbound"])
    msg["start"]["mediaFormat"] = fmt
    with pytest.raises(ProtocolError, match="must send audio/x-mulaw at 8000 Hz, 1 channel"):
        parse_message(json.dumps(msg))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                   max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["event", "streamSid", "start", "media", "dtmf", "mark", "stop", "track", "tracks",
                          "payload", "chunk", "timestamp", "mediaFormat", "sequenceNumber", "customParameters"])


@given(st.one_of(
    st.text(), st.binary(),
    st.fixed_dictionaries({"event": st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop"])},
                          optional={k: st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=6))
                                    for k in ("streamSid", "start", "media", "dtmf", "mark", "stop",
                                              "sequenceNumber")}).map(json.dumps),
))
def test_parse_message_only_ever_raises_protocol_error(text: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_message(text)


def test_serializers_write_twilio_shapes_exactly() -> None:
    assert json.loads(serialize_media(SID, b"\x00\xff")) == {"event": "media", "streamSid": SID,
                                                             "media": {"payload": "AP8="}}
    assert json.loads(serialize_mark(SID, "warn-1")) == {"event": "mark", "streamSid": SID,
                                                         "mark": {"name": "warn-1"}}
    assert json.loads(serialize_clear(SID)) == {"event": "clear", "streamSid": SID}


# --- the endpoint ----------------------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client, config, engines, tmp_path: Path, midday_zone: str):
    """The whole server, with the shared model and a fresh audit log."""
    serve = ServeConfig(db=tmp_path / "v.db", media_token=TOKEN, zones=(midday_zone,))
    return await aiohttp_client(create_app(config, serve, engines))


@pytest.mark.model
@pytest.mark.parametrize("url, headers", [
    ("/media/twilio", {}),
    ("/media/twilio?token=" + "y" * 32, {}),
    ("/media/twilio", {"Authorization": "Bearer " + "y" * 32}),
    ("/media/twilio/" + "y" * 32, {}),
    ("/media/twilio?token=" + "é" * 32, {}),
])
async def test_media_stream_needs_the_media_token(client, url: str, headers: dict) -> None:
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect(url, headers=headers)
    assert refused.value.status == 401
    resp = await client.get(url, headers=headers)
    assert resp.status == 401
    assert "media token" in (await resp.json())["error"]


@pytest.mark.model
@pytest.mark.parametrize("how", ["query", "bearer", "path"])
async def test_media_stream_accepts_the_token_three_ways(client, how: str) -> None:
    url = {"query": f"/media/twilio?token={TOKEN}", "bearer": "/media/twilio", "path": f"/media/twilio/{TOKEN}"}[how]
    headers = {"Authorization": f"Bearer {TOKEN}"} if how == "bearer" else {}
    ws = await client.ws_connect(url, headers=headers)
    await ws.close()


@pytest.mark.model
async def test_threat_hangs_up_emulated_twilio_peer(client, engines, shared: Path, midday_zone: str) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    for msg in (CONNECTED, start_message(["inbound", "outbound"], debtor_tz=midday_zone, agent_id="agent-7"),
                DTMF, MARK):
        await ws.send_json(msg)
    replies = asyncio.create_task(collect(ws))
    agent = ulaw_packets(shared / "audio" / "tts-cmn" / "a11.wav") + [SILENCE] * 1500
    sent = await send_media(ws, {"outbound": agent, "inbound": []})
    end = await next_event(events, "call_end")
    got = await replies

    assert sent < len(agent), "the server closed the stream before the peer ran out of audio"
    assert ws.close_code == 1000
    relayed = [base64.b64decode(m["media"]["payload"]) for m in got if m["event"] == "media"]
    assert relayed[:5] == agent[:5], "in-path, the agent track is relayed back to Twilio for the caller"
    assert all(m["streamSid"] == SID for m in got)
    records = call_records(engines, end["call_id"])
    kinds = [r.kind for r in records]
    assert kinds[0] == "call_start" and kinds[-1] == "call_end"
    assert records[0].actor == "agent-7" and records[0].data["adapter"] == "twilio"
    flag = next(r for r in records if r.kind == "flag")
    assert (flag.data["rule"], flag.data["leg"], flag.data["severity"]) == ("cn.threat.gang", "agent", "critical")
    action = next(r for r in records if r.kind == "action")
    assert (action.data["action"], action.data["by"]) == ("hangup", "adapter")
    assert records[-1].data["reason"].startswith("hangup: gang")


@pytest.mark.model
async def test_malformed_messages_mid_call_are_tolerated_emulated_twilio_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound"]))
    await send_media(ws, {"inbound": [SILENCE] * 10})
    for bad in ("{not json", json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "!!"}})):
        await ws.send_str(bad)
    await ws.send_bytes(b"\x00\x01")
    await send_media(ws, {"inbound": [SILENCE] * 10})
    await ws.send_json(STOP)
    end = await next_event(events, "call_end")
    await ws.close()

    assert end["reason"] == "stream stopped"
    assert end["duration_s"] == pytest.approx(0.4)
    assert [r.kind for r in call_records(engines, end["call_id"])] == ["call_start", "call_end"]


@pytest.mark.model
async def test_too_many_malformed_messages_close_the_stream_emulated_twilio_peer(client) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(start_message(["inbound"]))
    for _ in range(MAX_BAD_MESSAGES):
        await ws.send_str("garbage")
    end = await next_event(events, "call_end")
    await collect(ws)

    assert end["reason"] == "protocol error: too many malformed messages"
    assert ws.close_code == 1008


@pytest.mark.model
async def test_dropped_socket_ends_the_call_emulated_twilio_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound", "outbound"]))
    await send_media(ws, {"inbound": [SILENCE] * 25, "outbound": [SILENCE] * 25})
    await ws.close()
    end = await next_event(events, "call_end")

    assert end["reason"] == "connection dropped"
    records = call_records(engines, end["call_id"])
    assert [r.kind for r in records] == ["call_start", "call_end"]
    assert records[-1].data["duration_s"] == pytest.approx(0.5)
    assert records[-1].data["recordings"] == [f"{end['call_id']}.vrec"]
    assert engines.recordings.open_audio(end["call_id"]).duration_s == pytest.approx(0.5)


@pytest.mark.model
async def test_unsupported_media_format_refuses_the_stream_emulated_twilio_peer(client) -> None:
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    msg = start_message(["inbound"])
    msg["start"]["mediaFormat"]["sampleRate"] = 16000
    await ws.send_json(msg)
    await collect(ws)
    assert ws.close_code == 1008


async def messages_until(ws, event: str) -> list[dict]:
    """Messages from the server up to and including the first of an event."""
    got: list[dict] = []
    async with asyncio.timeout(60):
        while not got or got[-1]["event"] != event:
            got.append(json.loads(await ws.receive_str()))
    return got


@pytest.mark.model
async def test_supervisor_mute_and_warn_in_path_emulated_twilio_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(start_message(["inbound", "outbound"]))
    call = client.server.app[BOARD].calls[(await next_event(events, "call_start"))["call_id"]]
    tone = [bytes([i]) * 160 for i in range(3)]
    await send_media(ws, {"outbound": tone})
    relayed = await messages_until(ws, "media") + [json.loads(await ws.receive_str()) for _ in range(2)]
    assert [base64.b64decode(m["media"]["payload"]) for m in relayed] == tone

    call.act("mute", actor="supervisor-1", reason="abusive", leg="agent")
    assert await messages_until(ws, "clear") == [{"event": "clear", "streamSid": SID}]
    await send_media(ws, {"outbound": tone})
    call.act("warn", actor="supervisor-1", reason="tone down", leg="agent")
    warned = await messages_until(ws, "mark")
    assert warned[-1] == {"event": "mark", "streamSid": SID, "mark": {"name": "warn-1"}}
    assert len(warned) == 1 + 15 and all(m["event"] == "media" for m in warned[:-1]), \
        "the 300 ms beep in 20 ms packets, and none of the muted agent's audio"
    assert call.muted == {"agent"}
    assert call.summary()["warn_heard_by"] == "customer", "the console names who hears the beep: the caller"
    await ws.send_json(STOP)
    end = await next_event(events, "call_end")
    actions = [r for r in call_records(engines, end["call_id"]) if r.kind == "action"]
    assert [(r.data["action"], r.actor, r.data["by"]) for r in actions] == [
        ("mute", "supervisor-1", "adapter"), ("warn", "supervisor-1", "adapter")]


@pytest.mark.model
async def test_tap_mode_only_audits_actions_emulated_twilio_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(start_message(["inbound", "outbound"], mode="tap"))
    call = client.server.app[BOARD].calls[(await next_event(events, "call_start"))["call_id"]]
    call.act("hangup", actor="supervisor-1", reason="test")
    await next_event(events, "action")
    await send_media(ws, {"outbound": [b"\x01" * 160] * 5})
    await ws.send_json(STOP)
    end = await next_event(events, "call_end")
    got = await collect(ws)

    assert end["reason"] == "stream stopped"
    assert got == [], "a tap sends nothing back: no relay, no hang-up"
    action = next(r for r in call_records(engines, end["call_id"]) if r.kind == "action")
    assert (action.data["action"], action.data["mode"], action.data["by"]) == ("hangup", "tap", "pbx")


async def test_a_call_verified_before_it_arrived_starts_verified_emulated_twilio_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(start_message(["inbound", "outbound"], verified="true"))
    start = await next_event(events, "call_start")
    call = client.server.app[BOARD].calls[start["call_id"]]

    assert start["verified"] is True and call.monitor.state.verified
    await ws.send_json(STOP)
    end = await next_event(events, "call_end")
    record = next(r for r in call_records(engines, end["call_id"]) if r.kind == "call_start")
    assert record.data["verified"] is True, "the audit keeps who vouched for the identity: the PBX, not the agent"


async def test_verified_parameter_must_be_true_or_false_emulated_twilio_peer(client) -> None:
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(start_message(["inbound", "outbound"], verified="yes please"))
    await collect(ws)
    assert ws.close_code == 1008


@pytest.mark.model
async def test_server_shutdown_ends_live_streams_emulated_twilio_peer(client, engines) -> None:
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(start_message(["inbound"]))
    call_id = (await next_event(events, "call_start"))["call_id"]
    await send_media(ws, {"inbound": [SILENCE] * 5})
    replies = asyncio.create_task(collect(ws))
    await client.server.close()
    await replies

    assert ws.close_code == 1001

    records = call_records(engines, call_id)
    assert records[-1].kind == "call_end" and records[-1].data["reason"] == "server shutdown"
