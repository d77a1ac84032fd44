"""The reminder bot over SIP: it dials a real, silent sipp callee, speaks on the call's RTP, hears nothing and ends."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from baresip import BaresipError
from live_peers import Peers, finished, free_port, listening, sip_port

import voicebot.bot
from voicebot.adapters.sip import SipAdapter, SipSettings
from voicebot.adapters.sip_session import SipSession
from voicebot.call import CallBoard
from voicebot.campaigns import DialPlan, run_sip_campaign
from voicebot.config import Config

pytestmark = [pytest.mark.sip, pytest.mark.model,
              pytest.mark.skipif(not shutil.which("sipp"), reason="needs sipp")]

PHONE = "+8613900000009"
ACCOUNT = {"name": "李娜", "id_last4": "1234", "amount": "3200", "due_date": "2026-11-03", "lender": "示例银行",
           "days_overdue": "20"}

QUIET_PEER = SipSettings(dial_timeout_s=10, rtp_timeout_s=120)
"""sipp sends no RTP at all (a phone line would carry silence): RTP timeout only after the test's own limit."""


async def silent_callee(peers: Peers, tmp_path: Path) -> int:
    """sipp's own uas scenario without -rtp_echo: it answers, sends no audio, and waits for our BYE."""
    scenario, port = tmp_path / "uas_silent.xml", free_port()
    dumped = subprocess.run(["sipp", "-sd", "uas"], capture_output=True, check=False).stdout  # sipp exits 99 here
    assert b"</scenario>" in dumped
    scenario.write_bytes(dumped)
    await peers.sipp("uas_silent", scenario, "", port=port)
    await listening(port)
    return port


@pytest.fixture
def quick_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dialog hears silence after 1.5 s of quiet instead of 6 s."""
    monkeypatch.setattr(voicebot.bot, "SILENCE_S", 1.5)


@pytest.fixture
def tx_audio(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What the bot's audio did on the SIP call: the deepest fill of its transmit buffer, and the call itself."""
    seen: dict = {"high_water": 0, "sip": None}
    send = SipSession.send

    async def watched(self: SipSession, pcm) -> None:
        await send(self, pcm)
        sip = seen["sip"] = self.sip.get("customer")
        with contextlib.suppress(BaresipError):
            seen["high_water"] = max(seen["high_water"], sip.audio.stats().tx_high_water)

    monkeypatch.setattr(SipSession, "send", watched)
    return seen


async def test_bot_dials_a_silent_callee_prompts_and_ends_on_silence(config: Config, engines, peers: Peers,
                                                                    tmp_path: Path, midday_zone: str,
                                                                    quick_silence: None, tx_audio: dict) -> None:
    port = await silent_callee(peers, tmp_path)
    board = CallBoard()
    events = board.listen(maxsize=0)
    adapter = SipAdapter(engines, board, listen=f"127.0.0.1:{sip_port()}", settings=QUIET_PEER)
    await adapter.start()
    try:
        bot = await adapter.dial_bot(f"sip:{PHONE}@127.0.0.1:{port}", config, ACCOUNT, zones=(midday_zone,))
        await asyncio.wait_for(bot.call.wait(), 120)
    finally:
        await adapter.close()
    assert await finished(peers.procs[0]) == 0, peers.log("uas_silent")
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    said = [e["line_id"] for e in seen if e["type"] == "bot_say"]
    assert said[0] == "opening" and "silence_prompt" in said and said[-1] == "goodbye", said
    assert tx_audio["high_water"] > 0 and tx_audio["sip"].final_stats.tx_packets > 0, tx_audio
    assert [e["kind"] for e in seen if e["type"] == "outcome"] == ["silence"]
    recs = [r for r in engines.audit.records() if r.call_id == bot.call.call_id]
    kinds = [r.kind for r in recs]
    assert kinds[0] == "call_start" and "bot_outcome" in kinds and kinds[-1] == "call_end", kinds
    assert next(r for r in recs if r.kind == "bot_outcome").data["kind"] == "silence"
    assert next(r for r in recs if r.kind == "call_end").data["reason"].startswith("hangup: bot:")
    assert adapter.live_calls == 0 and engines.audit.verify().ok


async def test_campaign_run_with_the_bot_stores_the_dialog_outcome(config: Config, engines, peers: Peers,
                                                                   tmp_path: Path, midday_zone: str,
                                                                   quick_silence: None) -> None:
    from test_campaign import csv_text, load, row

    from voicebot.campaigns import CampaignStore

    port = await silent_callee(peers, tmp_path)
    with CampaignStore.open(engines.audit.path) as store:
        load(store, csv_text(row("B1", phone=PHONE, tz=midday_zone)))
        reports = await run_sip_campaign(
            engines, store, engines.rules.pack, DialPlan.parse([f"127.0.0.1:{port}"]),
            listen=f"127.0.0.1:{sip_port()}", once=True, now=lambda: datetime.now(UTC),
            settings=QUIET_PEER, bot=config)
    [report] = reports
    assert (report.status, report.kind) == ("answered", "silence"), report
    assert await finished(peers.procs[0]) == 0, peers.log("uas_silent")
    [outcome] = [r for r in engines.audit.records() if r.kind == "bot_outcome"]
    assert outcome.data["kind"] == "silence"
    kinds = [r.kind for r in engines.audit.records() if r.call_id == outcome.call_id]
    assert "bot_outcome" in kinds and "call_end" in kinds and kinds[-1] == "call_outcome", kinds


async def test_a_collection_run_over_sip_moves_the_debt_and_plans_its_next_dial(config: Config, engines, peers: Peers,
                                                                              tmp_path: Path, midday_zone: str,
                                                                              quick_silence: None) -> None:
    from test_campaign import csv_text, load, row

    from voicebot.campaigns import CampaignStore
    from voicebot.campaigns.lifecycle import DebtBook
    from voicebot.campaigns.strategy import load_strategy

    port = await silent_callee(peers, tmp_path)
    with CampaignStore.open(engines.audit.path) as store:
        load(store, csv_text(row("B1", phone=PHONE, tz=midday_zone)), at=datetime.now(UTC))
        [report] = await run_sip_campaign(
            engines, store, engines.rules.pack, DialPlan.parse([f"127.0.0.1:{port}"]),
            listen=f"127.0.0.1:{sip_port()}", once=True, now=lambda: datetime.now(UTC),
            settings=QUIET_PEER, bot=config, strategy=load_strategy("cn-standard"))
        account = store.account("c1", "B1")
    assert (report.status, report.kind, report.state) == ("answered", "silence", "pending"), report
    assert await finished(peers.procs[0]) == 0, peers.log("uas_silent")
    with DebtBook.open(engines.audit.path, engines.audit) as book:
        [change] = book.history("示例银行/B1")
    [outcome] = [r for r in engines.audit.records() if r.kind == "bot_outcome"]
    assert (change["from_state"], change["to_state"], change["cause"]) == ("new", "reminding",
                                                                           f"call:{outcome.call_id}")
    wait = account.next_due - datetime.now(UTC)
    assert timedelta(days=1) < wait < timedelta(days=3), "the next of 3 dials in 7 days, spread, not a retry count"
