"""Overload figures: the delay to hang-up of a real violating call while the server is flooded, and whether each
flood was refused.

Starts `voicebot serve` (capacity as configured or measured, SIP on a free port), streams the threat call over
Twilio Media Streams, and one second later floods the server with one of: Twilio streams of noise paced in real
time, unpaced streams (media as fast as the socket takes it), idle streams (a `start` and no media), or unanswered
SIP INVITEs (never ACKed). Prints one JSON line per figure.

Usage: python bench/overload.py [--floods noise,unpaced,idle,invite] [--streams 20] [--invites 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

if not __package__:  # run as a file: this file's folder must not shadow the project's packages
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.figures import emit
from bench.live import FRAME_MS, call_frames, message, midday_zone, one_call, rss_mib, start_server, stop_server
from voicebot.config import load_config

FLOOD_S = 20.0
"""How long each flooding stream lasts (unless the server closes it first)."""


async def flood_stream(session: aiohttp.ClientSession, url: str, kind: str) -> int | None:
    """One flooding Twilio stream; returns the close code the server gave it (None: it was never closed)."""
    sid = "MZ" + secrets.token_hex(16)
    async with session.ws_connect(url) as ws:
        start = {"streamSid": sid, "accountSid": "AC" + "0" * 32, "callSid": "CA" + secrets.token_hex(16),
                 "tracks": ["inbound", "outbound"], "customParameters": {"debtor_tz": midday_zone()},
                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        await ws.send_str(message("start", sid, sequenceNumber="1", start=start))
        reader = asyncio.create_task(ws.receive())
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < FLOOD_S and not reader.done():
            if kind != "idle":
                payload = base64.b64encode(os.urandom(8000 * FRAME_MS // 1000)).decode()
                for track in ("inbound", "outbound"):
                    media = {"track": track, "chunk": str(i + 1), "timestamp": str(i * FRAME_MS), "payload": payload}
                    await ws.send_str(message("media", sid, sequenceNumber=str(i + 2), media=media))
                i += 1
            pause = 0.0 if kind == "unpaced" else max(0.0, t0 + i * FRAME_MS / 1000 - time.monotonic())
            await asyncio.sleep(pause if kind != "idle" else 0.5)
        reader.cancel()
        return ws.close_code


def invite(port: int, n: int) -> bytes:
    """A minimal SIP INVITE with an SDP offer, from a caller that will never ACK."""
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {30000 + 2 * n} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    head = (f"INVITE sip:agent@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{secrets.token_hex(8)}\r\n"
            f"From: <sip:flood@127.0.0.1>;tag={secrets.token_hex(4)}\r\nTo: <sip:agent@127.0.0.1:{port}>\r\n"
            f"Call-ID: {secrets.token_hex(12)}@flood\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@127.0.0.1:9>\r\n"
            f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return (head + sdp).encode()


async def invite_flood(port: int, n: int) -> None:
    """`n` INVITEs over 5 s from a UDP socket that never answers (no ACK, no BYE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            s.sendto(invite(port, i), ("127.0.0.1", port))
            await asyncio.sleep(5.0 / n)
        await asyncio.sleep(FLOOD_S)


def health(port: int) -> dict:
    """The server's /healthz: live calls, capacity, refusals so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return json.loads(r.read())


async def scenario(kind: str, url: str, port: int, sip_port: int, streams: int, invites: int) -> None:
    """The threat call, a flood one second later; prints the threat's delay and what the flood got."""
    frames = call_frames(load_config().shared_dir)
    before = health(port)["refused"]
    async with aiohttp.ClientSession() as session:
        threat = asyncio.create_task(one_call(session, url, *frames, delay_start_s=0))
        await asyncio.sleep(1)
        if kind == "invite":
            flood = [asyncio.create_task(invite_flood(sip_port, invites))]
        else:
            flood = [asyncio.create_task(flood_stream(session, url, kind)) for _ in range(streams)]
        delay = await threat
        codes = await asyncio.gather(*flood)
    after = health(port)
    refused_codes = sum(c == 1013 for c in codes if c is not None)
    emit("overload_threat_hangup_delay", float("nan") if delay is None else delay, "s", flood=kind,
         hung_up=delay is not None)
    emit("overload_flood_refused", after["refused"] - before, "calls", flood=kind,
         streams=invites if kind == "invite" else streams, closed_1013=refused_codes)


def main() -> None:
    """Run each flood against one server, one after the other, letting the server drain in between."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floods", default="noise,unpaced,idle,invite")
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--invites", type=int, default=100)
    parser.add_argument("--port", type=int, default=18766)
    args = parser.parse_args()
    token = secrets.token_urlsafe(24)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        sip_port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(args.port, Path(tmp), token, False, max_calls=0,
                            extra=["--sip-listen", f"127.0.0.1:{sip_port}"])
        url = f"http://127.0.0.1:{args.port}/media/twilio?token={token}"
        try:
            emit("server_capacity", health(args.port)["capacity"], "calls")
            for kind in args.floods.split(","):
                asyncio.run(scenario(kind, url, args.port, sip_port, args.streams, args.invites))
                emit("server_rss_after_flood", rss_mib(proc.pid), "MiB", flood=kind)
                while health(args.port)["calls"]:
                    time.sleep(1)
            emit("server_peak_rss", rss_mib(proc.pid, "VmHWM"), "MiB")
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
