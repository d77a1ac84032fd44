"""The reminder bot end to end over the Twilio protocol: an emulated debtor (Twilio is a cloud service) answers
with real speech and key presses; the bot hears, understands, answers from its script and records the outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from live_peers import CONNECTED, TwilioDebtor, start_message, ulaw_packets

import voicebot.bot
from recordings.screening import screen_recording
from voicebot.admission import MAX_AHEAD_S
from voicebot.config import ServeConfig
from voicebot.web.app import create_app
from voicebot.web.keys import BOARD

pytestmark = pytest.mark.model

TOKEN = "b" * 32
ACCOUNT = {"bot": "1", "name": "李娜", "id_last4": "1234", "amount": "3200", "due_date": "2026-11-03",
           "lender": "示例银行", "days_overdue": "20", "agent_id": "bot-01", "account_id": "ACC-1"}


@pytest.fixture
async def bot_client(aiohttp_client, config, engines, tmp_path: Path):
    """The server with the shared model; bot calls load the installed NLU model and espeak prompts."""
    serve = ServeConfig(db=tmp_path / "v.db", media_token=TOKEN)
    return await aiohttp_client(create_app(config, serve, engines))


@pytest.fixture
def say(shared: Path):
    """Real customer speech by utterance id (shared/audio/tts-cmn), as μ-law packets."""
    return lambda name: ulaw_packets(shared / "audio" / "tts-cmn" / f"{name}.wav")


async def bot_call(client, zone: str) -> AsyncIterator[tuple[TwilioDebtor, asyncio.Queue]]:
    events = client.server.app[BOARD].listen(maxsize=0)
    ws = await client.ws_connect(f"/media/twilio/{TOKEN}")
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound"], debtor_tz=zone, **ACCOUNT))
    return TwilioDebtor(ws), events


async def converse(debtor: TwilioDebtor, events: asyncio.Queue, replies: dict, max_turns: int = 12) -> list[str]:
    """Answer each of the bot's questions from `replies` (line id → speech packets or DTMF digits) until it hangs up;
    returns the lines the bot said once the call has ended."""
    said: list[str] = []
    ended = False

    def drain() -> None:
        nonlocal ended
        while not events.empty():
            event = events.get_nowait()
            if event["type"] == "bot_say":
                said.append(event["line_id"])
            ended = ended or event["type"] == "call_end"

    heard = 0
    for _ in range(max_turns):
        await debtor.bot_quiet(since=heard)
        drain()
        if debtor.closed:
            break
        reply = replies.get(said[-1]) if said else None
        heard = len(debtor.heard)
        if reply is None:
            await asyncio.sleep(0.5)
        elif isinstance(reply, str):
            await debtor.press(reply)
        else:
            await debtor.say(reply)
    await debtor.close()
    while not ended:
        await asyncio.sleep(0.1)
        drain()
    return said


def outcome_of(engines) -> dict:
    (record,) = [r for r in engines.audit.records() if r.kind == "bot_outcome"]
    return record.data


VERIFIED = {"ask_name": "c01", "ask_id_digits": "1234"}


@pytest.mark.parametrize(("replies", "kind", "must_say"), [
    ({**VERIFIED, "ask_payment": "c05", "ask_date": "c05", "ask_amount": "c05"}, "promise_to_pay",
     {"opening", "verified_disclosure", "confirm_promise"}),
    ({**VERIFIED, "ask_payment": "c08"}, "dispute", {"dispute_logged"}),
    ({**VERIFIED, "ask_payment": "c18", "offer_plan": "c05"}, "hardship_plan", {"offer_plan"}),
    ({**VERIFIED, "ask_payment": "c19"}, "callback", {"callback_confirm"}),
    ({"ask_name": "c10", "third_party_callback": "c20", "ask_callback_time": "c20"}, None, {"wrong_person_sorry"}),
    ({"ask_name": "c25", "offer_transfer": "c28"}, "complaint", {"complaint_ack"}),
], ids=["promise", "dispute", "hardship", "callback", "wrong-person", "complaint"])
async def test_bot_branch_over_twilio(bot_client, engines, say, midday_zone: str, replies: dict, kind: str | None,
                                      must_say: set[str]) -> None:
    debtor, events = await bot_call(bot_client, midday_zone)
    packets = {k: (v if v.isdigit() else say(v)) for k, v in replies.items()}
    said = await converse(debtor, events, packets)
    outcome = outcome_of(engines)
    assert must_say <= set(said), " ".join(said) + " " + str(outcome)
    if kind:
        assert outcome["kind"] == kind, (said, outcome)
    else:
        assert outcome["kind"] in ("wrong_person", "third_party_callback"), (said, outcome)
        assert "verified_disclosure" not in said, "nothing is disclosed to a third party"
    assert [r.kind for r in engines.audit.records()][-1] == "call_end"
    [recording] = engines.recordings.recordings()
    assert (recording.outcome, recording.agent_id, recording.account_id) == (outcome["kind"], "bot-01", "ACC-1")
    assert engines.recordings.open_audio(recording.recording_id).complete
    flags = [r.data for r in engines.audit.records() if r.kind == "flag" and r.data["leg"] == "agent"
             and r.data["category"] != "signal"]  # the bot logging a dispute is a signal, not a violation
    assert flags == [], "the bot never says what an agent must not"
    if kind == "promise_to_pay":
        assert Decimal(outcome["promise_amount"]) == 1500 and outcome["promise_date"]
        lines = engines.recordings.agent_lines(recording.recording_id)
        assert "录音" in lines[0]["text"] and lines[0]["start_s"] < lines[1]["start_s"], "the bot's lines are kept"
        screening = screen_recording(engines.recordings, recording.recording_id, engines.asr, engines.rules)
        marks = {k: v.mark for k, v in screening.scorecard.items()}
        assert marks["required_disclosures"] == marks["identity_before_disclosure"] == "pass", marks
        assert {u.text for u in screening.transcript if u.leg == "agent"} == {line["text"] for line in lines}


@pytest.mark.parametrize(("replies", "kind", "must_say"), [
    ({**VERIFIED, "ask_payment": "c13", "restate": "c15"}, "refused", {"restate", "goodbye"}),
    ({**VERIFIED, "ask_payment": "c29", "not_understood": "c30"}, "transferred", {"not_understood", "transfer"}),
], ids=["refusal", "not-understood"])
async def test_bot_restates_once_then_ends(bot_client, engines, say, midday_zone: str, replies: dict, kind: str,
                                           must_say: set[str]) -> None:
    debtor, events = await bot_call(bot_client, midday_zone)
    said = await converse(debtor, events, {k: (v if v.isdigit() else say(v)) for k, v in replies.items()})
    assert must_say <= set(said), said
    assert outcome_of(engines)["kind"] == kind
    assert said.count("restate") + said.count("not_understood") == 1, "asked again once, then ended"


async def test_bot_ends_at_its_maximum_call_length(bot_client, engines, say, midday_zone: str, monkeypatch) -> None:
    monkeypatch.setattr(voicebot.bot, "MAX_CALL_S", 20.0)
    debtor, events = await bot_call(bot_client, midday_zone)
    started = asyncio.get_running_loop().time()
    said = await converse(debtor, events, {"ask_name": "c01", "ask_id_digits": "1234", "ask_payment": "c19"})
    assert said[-1] == "max_length_goodbye", said
    assert outcome_of(engines)["kind"] == "max_length"
    assert asyncio.get_running_loop().time() - started < 40, "the goodbye came soon after the limit"


async def test_bot_ends_after_silence(bot_client, engines, midday_zone: str, monkeypatch) -> None:
    monkeypatch.setattr(voicebot.bot, "SILENCE_S", 1.5)
    debtor, events = await bot_call(bot_client, midday_zone)
    said = await converse(debtor, events, {})
    assert "silence_prompt" in said
    assert outcome_of(engines)["kind"] == "silence"


async def test_customer_speech_cuts_the_bot_off(bot_client, engines, say, midday_zone: str) -> None:
    debtor, events = await bot_call(bot_client, midday_zone)
    while len(debtor.heard) < 50:  # the bot has spoken a second of its opening
        await asyncio.sleep(0.02)
    await debtor.say(say("c30"))  # 喂，喂，听得见吗 — over the bot
    await asyncio.sleep(1.0)
    interrupted_at = debtor.clears[0] if debtor.clears else None
    await debtor.close()
    assert interrupted_at is not None, "the bot sent Twilio `clear` on barge-in"
    kinds = [events.get_nowait()["type"] for _ in range(events.qsize())]
    assert "barge_in" in kinds
    opening_frames = len(say("c30"))  # far shorter than the bot's opening and question
    sent_before_clear = sum(1 for t, _ in debtor.heard if t <= interrupted_at)
    assert sent_before_clear < 50 + opening_frames + 25, "the bot stopped within the customer's first words"


async def test_bot_hears_the_debtor_after_a_slow_set_up(bot_client, engines, say, midday_zone: str,
                                                        monkeypatch) -> None:
    """The debtor's media piles up while the bot loads its model; the backlog is read at once, not behind forever."""
    load_kit = voicebot.bot.load_kit

    def slow_load_kit(config):
        time.sleep(voicebot.bot.SILENCE_S + MAX_AHEAD_S + 1)
        return load_kit(config)

    monkeypatch.setattr(voicebot.bot, "load_kit", slow_load_kit)
    debtor, events = await bot_call(bot_client, midday_zone)
    said = await converse(debtor, events, {"ask_name": say("c01")}, max_turns=2)
    assert said[:3] == ["opening", "ask_name", "ask_id_digits"], "the name was heard in time, not after a prompt"


@pytest.mark.parametrize(("field", "value"), [("days_overdue", "9" * 200), ("amount", "1e999"), ("name", "x" * 5000),
                                              ("id_last4", "12345678"), ("due_date", "2026-13-01")])
def test_a_bot_stream_with_an_unbounded_account_field_is_refused_naming_the_field(field: str, value: str) -> None:
    from voicebot.bot import BotSetupError, account_from

    params = {"name": "王先生", "id_last4": "1234", "amount": "1500", "due_date": "2026-11-01", "lender": "招商银行",
              "days_overdue": "20"}
    assert account_from(params, ("Asia/Shanghai",)).days_overdue == 20
    with pytest.raises(BotSetupError, match=f"unusable {field} parameter") as refused:
        account_from({**params, field: value}, ("Asia/Shanghai",))
    assert value not in str(refused.value)
