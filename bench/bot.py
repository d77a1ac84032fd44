"""Bot figures over the Twilio protocol: response delay (end of the customer's voiced audio, by webrtcvad, to the
bot's first audio)
and barge-in delay (the customer starting to speak over the bot to Twilio `clear`).

Starts `voicebot serve` and plays an emulated debtor (tests/live_peers.py: Twilio is a cloud service) who answers
with real speech from shared/audio/tts-cmn. Prints one JSON line per figure.

Usage: python bench/bot.py [--calls 4] [--port 18766]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import webrtcvad

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: this file's folder must not shadow the project's packages
    sys.path[0] = str(ROOT)
sys.path.append(str(ROOT / "tests"))

from live_peers import CONNECTED, TwilioDebtor, start_message, ulaw_packets  # noqa: E402

from asr.codecs import decode  # noqa: E402
from bench.figures import emit  # noqa: E402
from bench.live import midday_zone, start_server  # noqa: E402
from voicebot.config import load_config  # noqa: E402

ACCOUNT = {"bot": "1", "name": "李娜", "id_last4": "1234", "amount": "3200", "due_date": "2026-11-03",
           "lender": "示例银行", "days_overdue": "20", "agent_id": "bot-01"}
REPLIES = {"ask_name": "c01", "ask_payment": "c05", "ask_date": "c05", "ask_amount": "c05"}


async def open_call(session: aiohttp.ClientSession, url: str) -> TwilioDebtor:
    """A bot call to the emulated debtor."""
    ws = await session.ws_connect(url)
    await ws.send_json(CONNECTED)
    await ws.send_json(start_message(["inbound"], debtor_tz=midday_zone(), **ACCOUNT))
    return TwilioDebtor(ws)


def trailing_silence_s(packets: list[bytes]) -> float:
    """Seconds of non-speech (webrtcvad, mode 1) after the last voiced 20 ms packet of an utterance."""
    vad = webrtcvad.Vad(1)
    voiced = [i for i, p in enumerate(packets) if vad.is_speech(decode(p, "ulaw").tobytes(), 8000)]
    return (len(packets) - 1 - voiced[-1]) * 0.02 if voiced else 0.0


async def response_delays(session: aiohttp.ClientSession, url: str, speech: dict[str, list[bytes]]) -> list[float]:
    """One promise-to-pay call: seconds from the end of each spoken reply's voice to the bot's next audio."""
    debtor, delays, answered = await open_call(session, url), [], 0
    for turn in range(6):
        await debtor.bot_quiet(since=answered, gap_s=1.2)  # the bot's answer to the last reply, then its silence
        if debtor.closed:
            break
        heard_before = answered = len(debtor.heard)
        if turn == 1:
            await debtor.press("1234")
            continue
        packets = speech[("c01", "c05")[min(turn, 1)]]
        sent = await debtor.say(packets) - trailing_silence_s(packets)
        while len(debtor.heard) == heard_before and not debtor.closed:
            await asyncio.sleep(0.005)
        if len(debtor.heard) > heard_before:
            delays.append(debtor.heard[heard_before][0] - sent)
    await debtor.close()
    return delays


async def barge_in_delay(session: aiohttp.ClientSession, url: str, packets: list[bytes]) -> float | None:
    """Seconds from the debtor starting to speak over the opening to Twilio `clear`."""
    debtor = await open_call(session, url)
    while len(debtor.heard) < 50 and not debtor.closed:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await debtor.say(packets)
    await asyncio.sleep(0.5)
    clears = [t for t in debtor.clears if t >= started]
    await debtor.close()
    return clears[0] - started if clears else None


async def run(url: str, calls: int, shared: Path) -> None:
    """Measure and print."""
    speech = {n: ulaw_packets(shared / "audio" / "tts-cmn" / f"{n}.wav") for n in ("c01", "c05", "c30")}
    delays: list[float] = []
    barge: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(calls):
            delays += await response_delays(session, url, speech)
            b = await barge_in_delay(session, url, speech["c30"])
            if b is not None:
                barge.append(b)
    for name, values in (("response_delay", delays), ("barge_in_delay", barge)):
        if len(values) >= 2:
            q = statistics.quantiles(values, n=20)
            emit(f"{name}_p50", statistics.median(values) * 1000, "ms", samples=len(values), protocol="twilio")
            emit(f"{name}_p95", q[-1] * 1000, "ms", samples=len(values), protocol="twilio")


def main() -> None:
    """Start the server, run the calls, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--port", type=int, default=18766)
    args = parser.parse_args()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(args.port, Path(tmp), token)
        try:
            asyncio.run(run(f"http://127.0.0.1:{args.port}/media/twilio/{token}", args.calls,
                            load_config().shared_dir))
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
