"""Live supervision figures: concurrent real-time calls and the delay from a violating phrase to the hang-up.

Starts `voicebot serve`, then drives N concurrent calls of real speech over the Twilio Media Streams protocol
(both tracks, 20 ms μ-law frames paced in real time, starts spread over 2 s). Each call is the stereo
threat call; the hang-up on the wire is the server closing the stream. Prints one JSON line per figure.

Usage: python bench/live.py [--calls 1,2,4,6,8,10,12] [--port 18765] [--language en]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np

if not __package__:  # run as a file: this file's folder must not shadow the project's packages
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.codecs import encode, read_audio_file, resample
from bench.figures import emit
from voicebot.config import load_config

FRAME_MS = 20
CALL = "call_agent_threat"
REALTIME_P95_S = 1.0
"""A round counts as real time when the server hangs up every call and the p95 delay stays within this."""


def call_frames(shared: Path) -> tuple[list[bytes], list[bytes], float]:
    """The threat call's agent and customer legs as 20 ms μ-law frames, and the end of the violating turn."""
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "calls" / f"{CALL}.wav")
    legs = [encode(resample(c, audio.sample_rate, 8000), "ulaw") for c in audio.channels]
    step = 8000 * FRAME_MS // 1000
    frames = [[leg[i : i + step] for i in range(0, len(leg), step)] for leg in legs]
    with (shared / "audio" / "tts-cmn" / "calls" / "turns.tsv").open(encoding="utf-8") as f:
        turns = [t for t in csv.DictReader(f, delimiter="\t") if t["call"] == CALL]
    threat_end_s = next(float(t["end_s"]) for t in turns if t["id"] == "a08")
    return frames[0], frames[1], threat_end_s


ENGLISH_AGENT = ("Hello, this is Anna from Acme Recovery. This call is recorded.",
                 "This is an attempt to collect a debt, and any information obtained will be used for that purpose.",
                 "Listen to me. If you do not pay today, we will break your legs.",
                 "I am not joking, we will come to your house tonight.")
ENGLISH_CUSTOMER = ("Yes, speaking.", "Okay.", "I cannot pay right now.", "Please stop.")


def english_call_frames() -> tuple[list[bytes], list[bytes], float]:
    """An English two-leg threat call spoken by espeak-ng (agent, then customer, turn by turn), as 20 ms μ-law
    frames, and the end of the threat (the third agent line)."""
    from voicebot.tts import EspeakSynthesizer

    voice = EspeakSynthesizer()
    gap = np.zeros(8000 // 2, np.int16)
    agent, customer, threat_end_s = [], [], 0.0
    for i, (said, reply) in enumerate(zip(ENGLISH_AGENT, ENGLISH_CUSTOMER, strict=True)):
        a, c = (resample(voice.synthesize(text, "en"), voice.sample_rate, 8000) for text in (said, reply))
        agent += [a, gap, np.zeros(len(c), np.int16), gap]
        customer += [np.zeros(len(a), np.int16), gap, c, gap]
        if i == 2:
            threat_end_s = sum(len(p) for p in agent[:-3]) / 8000
    step = 8000 * FRAME_MS // 1000
    legs = [encode(np.concatenate(leg), "ulaw") for leg in (agent, customer)]
    frames = [[leg[i : i + step] for i in range(0, len(leg), step)] for leg in legs]
    return frames[0], frames[1], threat_end_s


def midday_zone() -> str:
    """A zone where it is about noon now, inside every pack's calling hours (else the call is cut at once)."""
    offset = 12 - time.gmtime().tm_hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def message(event: str, sid: str, **body: object) -> str:
    """One Twilio Media Streams message."""
    return json.dumps({"event": event, "streamSid": sid, **body})


async def one_call(session: aiohttp.ClientSession, url: str, agent: list[bytes], customer: list[bytes],
                   threat_end_s: float, delay_start_s: float, language: str | None = None) -> float | None:
    """Stream one call (in `language`, None: the server's default); return seconds from the end of the violating
    phrase to the server closing the stream."""
    await asyncio.sleep(delay_start_s)
    sid = "MZ" + secrets.token_hex(16)
    params = {"debtor_tz": midday_zone(), **({"language": language} if language else {})}
    async with session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {"streamSid": sid, "accountSid": "AC" + "0" * 32, "callSid": "CA" + secrets.token_hex(16),
                 "tracks": ["inbound", "outbound"], "customParameters": params,
                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        await ws.send_str(message("start", sid, sequenceNumber="1", start=start))
        closed = asyncio.get_running_loop().create_future()

        async def reader() -> None:
            async for _ in ws:
                pass
            if not closed.done():
                closed.set_result(time.monotonic())

        read_task = asyncio.create_task(reader())
        t0 = time.monotonic()
        seq = 2
        try:
            for i, (a, c) in enumerate(zip(agent, customer, strict=False)):
                if closed.done():
                    break
                for track, payload in (("outbound", a), ("inbound", c)):
                    media = {"track": track, "chunk": str(i + 1), "timestamp": str(i * FRAME_MS),
                             "payload": base64.b64encode(payload).decode()}
                    await ws.send_str(message("media", sid, sequenceNumber=str(seq), media=media))
                    seq += 1
                await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_MS / 1000 - time.monotonic()))
        except (aiohttp.ClientError, ConnectionResetError):
            pass
        try:
            await asyncio.wait_for(asyncio.shield(closed), 5)
        except TimeoutError:  # the server never hung up: this call was not enforced in time
            read_task.cancel()
            await ws.close()
            return None
        read_task.cancel()
        return closed.result() - (t0 + threat_end_s)


async def round_of(n: int, url: str | list[str], frames: tuple[list[bytes], list[bytes], float],
                   language: str | None = None) -> list[float | None]:
    """N concurrent calls (in `language`), started over 2 s and dealt in turn to the servers at `url`; their
    phrase-end-to-hang-up delays (None: never hung up)."""
    agent, customer, threat_end_s = frames
    urls = [url] if isinstance(url, str) else url
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(one_call(session, urls[i % len(urls)], agent, customer, threat_end_s,
                                               random.uniform(0, 2), language) for i in range(n)))


def delay_p95(hung: list[float]) -> float:
    """The 95th percentile of the hang-up delays (infinite when no call was hung up)."""
    return statistics.quantiles(hung, n=20)[-1] if len(hung) >= 2 else (hung[0] if hung else float("inf"))


def start_server(port: int, data: Path, token: str, rules_only: bool = False, *, max_calls: int = 1000,
                 extra: list[str] | None = None, db: str | None = None) -> subprocess.Popen[bytes]:
    """`voicebot serve` on 127.0.0.1 with a fresh database, or the shared store `db` (max_calls 0: as measured);
    returns once /healthz answers."""
    env = {**os.environ, "VOICEBOT_MEDIA_TOKEN": token, "VOICEBOT_DATA_DIR": str(data)}
    voicebot = str(Path(sys.executable).parent / "voicebot")
    options = ["--rules-only"] if rules_only else []
    proc = subprocess.Popen([voicebot, "serve", "--port", str(port), "--db", db or str(data / "bench.db"),
                             "--max-calls", str(max_calls), *options, *(extra or [])], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("voicebot serve did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if an overloaded server is still draining its backlog after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_after_calls(port: int, pid: int) -> float:
    """The server's RSS once its calls have all ended (and it has had a moment to free their memory)."""
    for _ in range(120):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            if not json.loads(r.read())["calls"]:
                break
        time.sleep(0.5)
    time.sleep(2)
    return rss_mib(pid)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The server's resident memory now (VmRSS) or at its peak (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    """Run rounds of growing N and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,2,4,6,8,10,12")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--rules-only", action="store_true", help="serve without the semantic model (the before)")
    parser.add_argument("--language", choices=["zh", "en"], default="zh",
                        help="en: an English threat call (espeak-ng) naming its language, on a server for both, "
                             "heard by Whisper and judged by the US pack")
    parser.add_argument("--keep-going", action="store_true", help="run every round, even past the first that fails")
    args = parser.parse_args()
    config = load_config()
    english = args.language == "en"  # a server for both languages, each English call naming its language
    frames = english_call_frames() if english else call_frames(config.shared_dir)
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(args.port, Path(tmp), token, args.rules_only,
                            extra=["--pack", "cn-collection", "--pack", "us-fdcpa-regf"] if english else None)
        url = f"http://127.0.0.1:{args.port}/media/twilio?token={token}"
        best = 0
        all_delays: list[float] = []
        emit("server_rss_before_calls", rss_mib(proc.pid), "MiB")
        try:
            for n in (int(x) for x in args.calls.split(",")):
                server_cpu, client_cpu, wall = cpu_s(proc.pid), cpu_s(os.getpid()), time.monotonic()
                delays = asyncio.run(round_of(n, url, frames, "en" if english else None))
                wall = time.monotonic() - wall
                emit("server_cpu", (cpu_s(proc.pid) - server_cpu) / wall, "cores", calls=n)
                emit("load_client_cpu", (cpu_s(os.getpid()) - client_cpu) / wall, "cores", calls=n)
                hung = [d for d in delays if d is not None]
                p95 = delay_p95(hung)
                emit("hangup_delay_p50", statistics.median(hung) if hung else float("nan"), "s", calls=n,
                     hung_up=len(hung), protocol="twilio")
                emit("hangup_delay_p95", p95, "s", calls=n, hung_up=len(hung), protocol="twilio")
                emit("server_rss_after_round", rss_after_calls(args.port, proc.pid), "MiB", calls=n)
                if len(hung) == n and p95 <= REALTIME_P95_S:
                    best = n
                    all_delays.extend(hung)
                elif not args.keep_going:
                    break
            emit("concurrent_realtime_calls", best, "calls", criterion=f"all hung up, p95 <= {REALTIME_P95_S} s",
                 detector="rules" if args.rules_only else "rules+model", language=args.language)
            if len(all_delays) >= 2:
                q = statistics.quantiles(all_delays, n=20)
                emit("hangup_delay_p50_all_realtime_rounds", statistics.median(all_delays), "s")
                emit("hangup_delay_p95_all_realtime_rounds", q[-1], "s")
            emit("server_peak_rss", rss_mib(proc.pid, "VmHWM"), "MiB")
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
