"""English calls on a server that serves Mandarin and English: each call names its language (Twilio customParameters,
a SIP header, the campaign's account) and is heard by that language's recognizer and judged by its pack; the
English bot over Twilio (an emulated peer: Twilio is a cloud service) and over real SIP; English screening."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from live_peers import (
    CONNECTED,
    Peers,
    TwilioDebtor,
    call_records,
    collect,
    english_call,
    english_speech,
    listening,
    next_event,
    send_media,
    sip_port,
    start_message,
    ulaw_packets,
)
from live_peers import ULAW_SILENCE as SILENCE
from test_bot import converse, outcome_of

import voicebot.bot
from recordings.batch_screening import ScreenModels, screen_pending
from voicebot.adapters.sip import ProtocolError, SipAdapter, SipSettings, parse_call_headers
from voicebot.call import CallBoard, Engines, Hearing, LanguageNotServed, call_language, load_hearing
from voicebot.cli import main
from voicebot.config import Config, ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import BOARD

pytestmark = pytest.mark.model

TOKEN = "e" * 32
ACCOUNT = {"name": "John Smith", "id_last4": "1234", "amount": "420", "due_date": "2026-11-02",
           "lender": "Acme Bank", "days_overdue": "20", "agent_id": "bot-en", "account_id": "US-1", "language": "en"}
REPLIES = {
    "ask_name": "Yes, I am the account holder.",
    "promise": "I can pay two hundred dollars on the fifteenth of December.",
    "dispute": "I do not recognize this account.",
    "date": "On the fifteenth of December.",
}
"""The debtor's words, as espeak-ng says them and Whisper tiny.en hears them through μ-law (other wordings of the
same replies came out garbled, e.g. "debt" as "mask")."""


def next_december_15() -> str:
    """The date "December fifteenth" names today (the call's clock is the real one)."""
    today = date.today()
    return str(date(today.year + (today > date(today.year, 12, 15)), 12, 15))


def drained(events: asyncio.Queue) -> list[dict]:
    """The events a board listener has queued."""
    return [events.get_nowait() for _ in range(events.qsize())]


@pytest.fixture(scope="module")
def english(config: Config) -> Hearing:
    """Whisper tiny.en, the US pack and the semantic model, loaded once."""
    return load_hearing(config, "us-fdcpa-regf")


@pytest.fixture
def bilingual(engines: Engines, english: Hearing) -> Engines:
    """The shared engines serving Mandarin (the default, cn-collection) and English (us-fdcpa-regf)."""
    return dataclasses.replace(engines, others={"en": english})


@pytest.fixture
async def client(aiohttp_client, config: Config, bilingual: Engines, tmp_path: Path, midday_zone: str):
    serve = ServeConfig(db=tmp_path / "v.db", media_token=TOKEN, zones=(midday_zone,))
    return await aiohttp_client(create_app(config, serve, bilingual))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The debtor's English replies spoken by espeak-ng, 8 kHz WAV."""
    folder = tmp_path_factory.mktemp("en-speech")
    return {name: english_speech(text, folder / f"{name}.wav") for name, text in REPLIES.items()}


def test_a_call_is_heard_and_judged_in_the_language_it_names(bilingual: Engines, english: Hearing) -> None:
    assert bilingual.languages == ("zh", "en")
    assert bilingual.for_language(None) is bilingual and bilingual.for_language("zh") is bilingual
    heard = bilingual.for_language("en")
    assert (heard.asr, heard.rules, heard.meaning) == (english.asr, english.rules, english.meaning)
    assert heard.audit is bilingual.audit and heard.admission is bilingual.admission, "one server, one set of slots"
    assert [call_language(t) for t in ("en-US", "EN", "zh_CN", "cmn", "", None)] == ["en", "en", "zh", "zh", None,
                                                                                     None]
    with pytest.raises(ValueError, match="zh or en"):
        call_language("fr")
    with pytest.raises(LanguageNotServed, match="--pack"):
        dataclasses.replace(bilingual, others={}).for_language("en")


def test_a_sip_invite_names_its_language_in_a_header() -> None:
    assert parse_call_headers({"X-Call-Language": "en-US"}).language == "en"
    assert parse_call_headers({}).language is None
    with pytest.raises(ProtocolError, match="X-Call-Language"):
        parse_call_headers({"X-Call-Language": "klingon"})


def test_serve_takes_one_pack_per_language(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--pack", "cn-collection", "--pack", "cn-collection", "--db",
                                       str(tmp_path / "v.db")], env={"VOICEBOT_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "one pack per language" in result.output


async def test_an_english_agent_call_from_an_emulated_twilio_peer_is_hung_up_then_screened_in_english(
        client, bilingual: Engines, config: Config, tmp_path: Path, midday_zone: str) -> None:
    call = english_call(tmp_path / "threat_en.wav")
    events = client.server.app[BOARD].listen()
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound", "outbound"], debtor_tz=midday_zone, agent_id="agent-us",
                                     language="en-US"))
    replies = asyncio.create_task(collect(ws))
    agent, customer = ulaw_packets(call, 0) + [SILENCE] * 500, ulaw_packets(call, 1)
    sent = await send_media(ws, {"outbound": agent, "inbound": customer}, packet_s=0.01)
    end = await next_event(events, "call_end")
    await replies
    assert sent < len(agent), "the server hung up before the agent ran out of audio"
    records = call_records(bilingual, end["call_id"])
    assert (records[0].data["pack"], records[0].data["language"]) == ("us-fdcpa-regf", "en")
    flag = next(r.data for r in records if r.kind == "flag" and r.data["category"] == "threat")
    assert flag["leg"] == "agent" and flag["rule"].startswith("us.")
    assert next(r.data for r in records if r.kind == "action")["action"] == "hangup"

    [recording] = bilingual.recordings.recordings()
    assert recording.pack == "us-fdcpa-regf"
    report = screen_pending(bilingual.recordings, ScreenModels.of(config), workers=1)
    [outcome] = report.outcomes
    assert outcome.screening is not None, outcome.error
    said = " ".join(u.text for u in outcome.screening.transcript if u.leg == "agent").lower()
    assert "acme recovery" in said, "screened with the English recognizer"
    assert "threat" in {f["category"] for f in outcome.screening.flags}


@pytest.mark.parametrize(("language", "served"), [("fr", True), ("en", False)], ids=["unknown", "not-served"])
async def test_a_call_in_a_language_not_served_is_refused_emulated_twilio_peer(
        aiohttp_client, config: Config, engines: Engines, bilingual: Engines, tmp_path: Path, language: str,
        served: bool) -> None:
    serve = ServeConfig(db=tmp_path / "v.db", media_token=TOKEN)
    client = await aiohttp_client(create_app(config, serve, bilingual if served else engines))
    ws = await client.ws_connect(f"/media/twilio?token={TOKEN}")
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound", "outbound"], language=language))
    await collect(ws)
    assert ws.close_code == 1008
    assert list(engines.audit.records()) == [], "no call was started"


async def test_the_english_bot_reaches_a_promise_over_an_emulated_twilio_peer(
        client, bilingual: Engines, speech: dict[str, Path], midday_zone: str) -> None:
    events = client.server.app[BOARD].listen(maxsize=0)
    ws = await client.ws_connect(f"/media/twilio/{TOKEN}")
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound"], debtor_tz=midday_zone, bot="1", **ACCOUNT))
    said = await converse(TwilioDebtor(ws), events, {
        "ask_name": ulaw_packets(speech["ask_name"]), "ask_id_digits": "1234",
        "ask_payment": ulaw_packets(speech["promise"]), "ask_date": ulaw_packets(speech["date"])})
    outcome = outcome_of(bilingual)
    assert said[0] == "opening" and {"verified_disclosure", "confirm_promise"} <= set(said), (said, outcome)
    assert said.index("verified_disclosure") > said.index("ask_id_digits"), "the mini-Miranda only once verified"
    assert (outcome["kind"], outcome["script"]) == ("promise_to_pay", "en-reminder")
    assert (Decimal(outcome["promise_amount"]), outcome["promise_date"]) == (200, next_december_15())
    start = next(r for r in bilingual.audit.records() if r.kind == "call_start")
    assert start.data["pack"] == "us-fdcpa-regf"
    flags = [r.data for r in bilingual.audit.records() if r.kind == "flag" and r.data["leg"] == "agent"
             and r.data["category"] != "signal"]
    assert flags == [], "the bot never says what a US collector must not"


@pytest.mark.sip
async def test_the_english_bot_logs_a_dispute_over_sip(config: Config, bilingual: Engines, peers: Peers,
                                                      speech: dict[str, Path], tmp_path: Path, midday_zone: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voicebot.bot, "SILENCE_S", 3.0)
    port, plan = sip_port(), tmp_path / "debtor.plan"
    plan.write_text("\n".join([str(speech["ask_name"]), "dtmf:1234", str(speech["dispute"])]))
    await peers.start("debtor", sys.executable, str(Path(__file__).with_name("sip_debtor.py")), str(port), str(plan))
    await listening(port)
    board = CallBoard()
    events = board.listen(maxsize=0)
    adapter = SipAdapter(bilingual, board, listen=f"127.0.0.1:{sip_port()}",
                         settings=SipSettings(dial_timeout_s=10, rtp_timeout_s=120))
    await adapter.start()
    try:
        params = {k: v for k, v in ACCOUNT.items() if k not in ("agent_id", "account_id")}
        bot = await adapter.dial_bot(f"sip:+12125550100@127.0.0.1:{port}", config, params, zones=(midday_zone,))
        await asyncio.wait_for(bot.call.wait(), 180)
    finally:
        await adapter.close()
    outcome = outcome_of(bilingual)
    turns = [e.get("line_id") or e.get("text") for e in drained(events) if e["type"] == "bot_say"
             or (e["type"] == "final" and e["leg"] == "customer")]
    assert (outcome["kind"], outcome["script"]) == ("dispute", "en-reminder"), (turns, peers.log("debtor"))
    assert "dispute_logged" in turns and turns.index("verified_disclosure") > turns.index("ask_id_digits"), turns
    flags = [r.data for r in bilingual.audit.records() if r.kind == "flag" and r.data["leg"] == "agent"
             and r.data["category"] != "signal"]
    assert flags == [], "the bot never says what a US collector must not"
    [recording] = bilingual.recordings.recordings()
    assert recording.pack == "us-fdcpa-regf" and bilingual.audit.verify().ok
