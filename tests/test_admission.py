"""Admission control and overload: a call past capacity is refused in each protocol's own way, the calls already
accepted keep being recognised, media sent faster than real time is read no faster, and an idle call ends.

Twilio and Asterisk cannot run here: their peers are emulated (the message and frame sequences they document);
the SIP test uses real sipp callers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from live_peers import (
    CONNECTED,
    call_records,
    collect,
    next_event,
    open_call,
    send_media,
    start_message,
    ulaw_packets,
)
from live_peers import ULAW_SILENCE as SILENCE

from voicebot.adapters.audiosocket_frames import Kind, parse_frames, serialize_frame
from voicebot.admission import MAX_AHEAD_S, Admission, CallRefused
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import AUDIOSOCKET, BOARD, ENGINES

TOKEN = "x" * 32
URL = f"/media/twilio?token={TOKEN}"


def serve_config(tmp_path: Path, zone: str, **options: object) -> ServeConfig:
    return ServeConfig(db=tmp_path / "v.db", media_token=TOKEN, zones=(zone,), audiosocket_port=0, **options)


@pytest.fixture
async def one_slot(aiohttp_client, config, engines, tmp_path: Path, midday_zone: str):
    """The whole server with room for one call."""
    return await aiohttp_client(create_app(config, serve_config(tmp_path, midday_zone, max_calls=1), engines))


def test_admission_takes_and_gives_back_slots() -> None:
    admission = Admission(capacity=2)
    admission.take("twilio")
    admission.take("sip")
    with pytest.raises(CallRefused, match="capacity"):
        admission.take("twilio")
    admission.give_back()
    admission.take("audiosocket")
    assert (admission.live, admission.refused, admission.full) == (2, 1, True)
    assert Admission().capacity >= 1, "0 means the measured capacity of this machine"


@pytest.mark.model
async def test_twilio_past_capacity_is_closed_try_again_later_while_the_live_call_goes_on_emulated_twilio_peer(
        one_slot, engines, shared: Path, midday_zone: str) -> None:
    events = one_slot.server.app[BOARD].listen(maxsize=0)
    first = await one_slot.ws_connect(URL)
    await first.send_json(CONNECTED)
    await first.send_json(start_message(["inbound", "outbound"], debtor_tz=midday_zone))
    call_id = (await next_event(events, "call_start"))["call_id"]
    speech = ulaw_packets(shared / "audio" / "tts-cmn" / "b01.wav") + [SILENCE] * 75
    talking = asyncio.create_task(send_media(first, {"outbound": speech, "inbound": []}, packet_s=0.02))

    second = await one_slot.ws_connect(URL)
    await second.send_json(CONNECTED)
    await second.send_json(start_message(["inbound", "outbound"], debtor_tz=midday_zone))
    await collect(second)
    health = await (await one_slot.get("/healthz")).json()
    await talking
    transcript = await next_event(events, "final")
    await first.close()
    end = await next_event(events, "call_end")

    assert second.close_code == 1013, "Try Again Later: the PBX routes the call to another node"
    assert (health["calls"], health["capacity"], health["full"], health["refused"]) == (1, 1, True, 1)
    assert transcript["call_id"] == call_id and transcript["leg"] == "agent" and transcript["text"]
    assert end["call_id"] == call_id
    assert len([r for r in engines.audit.records() if r.kind == "call_start"]) == 1, "the refused call left no record"
    assert one_slot.server.app[ENGINES].admission.live == 0


@pytest.mark.model
async def test_audiosocket_past_capacity_gets_a_hangup_frame_emulated_asterisk_peer(one_slot) -> None:
    app = one_slot.server.app
    events = app[BOARD].listen(maxsize=0)
    (agent,), call_id = await open_call(app, events, legs=1)
    (refused,), _ = await asyncio.gather(open_refused(app), agent.play([bytes(320)] * 25))
    await agent.hang_up()
    end = await next_event(events, "call_end")

    assert refused.heard and refused.heard[-1].kind is Kind.HANGUP
    assert end["call_id"] == call_id and app[ENGINES].admission.refused == 1


@pytest.mark.model
async def test_audiosocket_refusal_reaches_a_channel_that_keeps_streaming_emulated_asterisk_peer(one_slot) -> None:
    app = one_slot.server.app
    (agent,), _ = await open_call(app, app[BOARD].listen(maxsize=0), legs=1)
    reader, writer = await asyncio.open_connection("127.0.0.1", app[AUDIOSOCKET].port)
    writer.write(serialize_frame(Kind.UUID, uuid.uuid4().bytes) + serialize_frame(Kind.AUDIO, bytes(320)) * 50)
    await asyncio.sleep(0.5)  # refused by now, with this channel's audio unread: closing on it would reset
    for _ in range(10):  # a write into a reset connection would fail, and the hang-up frame read so far with it
        writer.write(serialize_frame(Kind.AUDIO, bytes(320)))
        await asyncio.sleep(0.02)
    heard = parse_frames(bytearray(await asyncio.wait_for(reader.read(), 10)))
    writer.close()
    await agent.hang_up()

    assert [f.kind for f in heard] == [Kind.HANGUP], "the hang-up frame, then the end of the stream"


async def open_refused(app) -> tuple:
    """A second call's channel: the server answers its UUID with a hang-up frame and closes."""
    from live_peers import AsteriskChannel
    channel = await AsteriskChannel.connect(app[AUDIOSOCKET].port, uuid.uuid4())
    async with asyncio.timeout(10):
        await channel.closed.wait()
    return (channel,)


@pytest.mark.model
async def test_media_sent_faster_than_real_time_is_read_no_faster_emulated_twilio_peer(
        aiohttp_client, config, engines, tmp_path: Path, midday_zone: str) -> None:
    client = await aiohttp_client(create_app(config, serve_config(tmp_path, midday_zone), engines))
    events = client.server.app[BOARD].listen(maxsize=0)
    ws = await client.ws_connect(URL)
    await ws.send_json(start_message(["inbound", "outbound"], debtor_tz=midday_zone))
    started = time.monotonic()
    flood = asyncio.create_task(send_media(ws, {"inbound": [SILENCE] * 3000, "outbound": [SILENCE] * 3000},
                                           packet_s=0))
    await asyncio.sleep(3)
    await ws.close()
    wall_s = time.monotonic() - started
    end = await next_event(events, "call_end")
    flood.cancel()

    assert end["duration_s"] <= wall_s + MAX_AHEAD_S + 0.5, "60 s of audio flooded in 3 s was not all taken in"
    assert engines.recordings.open_audio(end["call_id"]).duration_s == pytest.approx(end["duration_s"], abs=0.1)


@pytest.mark.model
async def test_a_call_with_no_media_ends_recorded_and_audited_emulated_twilio_peer(
        aiohttp_client, config, engines, tmp_path: Path, midday_zone: str) -> None:
    client = await aiohttp_client(create_app(config, serve_config(tmp_path, midday_zone, idle_timeout_s=1), engines))
    events = client.server.app[BOARD].listen(maxsize=0)
    ws = await client.ws_connect(URL)
    await ws.send_json(start_message(["inbound", "outbound"], debtor_tz=midday_zone))
    end = await next_event(events, "call_end", timeout_s=30)
    await collect(ws)

    assert end["reason"] == "no media for 1 s"
    records = call_records(engines, end["call_id"])
    assert [r.kind for r in records] == ["call_start", "action", "call_end"]
    assert (records[1].actor, records[1].data["action"]) == ("watchdog", "hangup")
    assert engines.recordings.get(end["call_id"]).status == "complete"
    assert client.server.app[ENGINES].admission.live == 0
