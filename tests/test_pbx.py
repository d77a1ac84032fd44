"""Tap mode: a tapped call's actions become signed requests to the PBX's webhook (a real aiohttp server here)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from voicebot.adapters.pbx import SIGNATURE_HEADER, PbxWebhook, sign
from voicebot.adapters.replay import load_call_audio, replay_call
from voicebot.call import CallBoard, CallInfo, Engines
from voicebot.tap import PbxControl

SECRET = "s" * 32


@pytest.fixture
async def pbx(aiohttp_server):
    """A PBX webhook that records what it is asked, and answers 200 when the signature is right."""
    asked: list[dict] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get(SIGNATURE_HEADER) != sign(SECRET, body):
            return web.Response(status=403)
        asked.append(json.loads(body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/voicebot", webhook)
    server = await aiohttp_server(app)
    return str(server.make_url("/voicebot")), asked


async def test_control_asks_the_pbx_with_a_valid_signature(pbx) -> None:
    url, asked = pbx
    errors: list[dict] = []
    async with aiohttp.ClientSession() as session:
        control = PbxControl(PbxWebhook(url, SECRET, session), "call-1", errors.append)
        await control.mute("agent", True)
        await control.hangup("gang (critical)")
    assert [(a["call_id"], a["action"], a["leg"]) for a in asked] == [("call-1", "mute", "agent"),
                                                                       ("call-1", "hangup", None)]
    assert asked[1]["reason"] == "gang (critical)" and errors == []


async def test_a_refusing_or_unreachable_pbx_is_an_error_event_not_a_crash(pbx) -> None:
    url, _ = pbx
    errors: list[dict] = []
    async with aiohttp.ClientSession() as session:
        await PbxControl(PbxWebhook(url, "wrong" * 8, session), "c", errors.append).hangup("x")
        await PbxControl(PbxWebhook("http://127.0.0.1:9/none", SECRET, session), "c", errors.append).hangup("x")
    assert [e["error"] for e in errors] == ["PBX did not accept hangup (403)", "PBX did not accept hangup (None)"]


@pytest.mark.model
async def test_tapped_threat_call_asks_the_pbx_to_hang_up(pbx, engines, threat_call: Path) -> None:
    url, asked = pbx
    async with aiohttp.ClientSession() as session:
        tapped = Engines(asr=engines.asr, rules=engines.rules, audit=engines.audit,
                         recordings=engines.recordings, executor=engines.executor, disk=engines.disk,
                         pbx=PbxWebhook(url, SECRET, session))
        info = CallInfo(adapter="replay", mode="tap", zones=("Asia/Shanghai",), speed=8,
                        started_at=datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
        call = await replay_call(load_call_audio([threat_call]), tapped, CallBoard(), info)
    hangups = [a for a in asked if a["action"] == "hangup"]
    assert hangups and hangups[0]["call_id"] == call.call_id and hangups[0]["reason"] == "gang (critical)"
    assert call.ended_reason == "completed", "a tap cannot end the call itself; the PBX does"
    actions = [r.data for r in engines.audit.records() if r.kind == "action" and r.data["action"] == "hangup"]
    assert actions and all(a["by"] == "pbx" for a in actions)
