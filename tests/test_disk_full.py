"""A full disk mid-call (the data folder on a small real tmpfs): the call fails safe, leaves the live list, the fault
shows, and everything accepted before stays intact."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from live_peers import CONNECTED, free_port, health, send_media, start_message, start_serve, ulaw_packets
from test_live_call import SHANGHAI_NOON

from recordings.store import RecordingStore
from voicebot.adapters.replay import load_call_audio, replay_call
from voicebot.audit import AuditLog
from voicebot.call import RETRY_WRITE_S, CallBoard, CallInfo, Engines
from voicebot.web.app import healthz
from voicebot.web.keys import BOARD, ENGINES

pytestmark = pytest.mark.model


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs; skipped where this process may not mount one (it needs root, as CI's container has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; its path (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    with contextlib.suppress(OSError):
        while True:  # the last blocks, a byte at a time
            with open(filler, "ab", buffering=0) as f:
                f.write(b"\0" * 512)
    return filler


async def test_a_disk_filling_up_mid_call_makes_the_call_fail_safe(engine, cn_rules, threat_call: Path,
                                                                   small_disk: Path) -> None:
    audit = AuditLog.open(small_disk / "voicebot.db")
    recordings = RecordingStore.open(audit.path, small_disk / "recordings")
    engines = Engines(asr=engine, rules=cn_rules, audit=audit, recordings=recordings)
    board = CallBoard()
    events = board.listen(maxsize=0)
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=SHANGHAI_NOON, speed=2)

    async def fill_once_heard() -> Path:
        while (await events.get())["type"] != "final":
            pass
        return await asyncio.get_running_loop().run_in_executor(None, fill, small_disk)

    filling = asyncio.create_task(fill_once_heard())
    call = await asyncio.wait_for(replay_call(load_call_audio([threat_call]), engines, board, info), 60)
    filler = await filling
    seen = [events.get_nowait() for _ in range(events.qsize())]
    assert any(e["type"] == "error" and e["fatal"] for e in seen), "the failure is shown on the console"
    assert any(e["type"] == "alert" and e["kind"] == "fail_safe" and e["call_id"] == call.call_id for e in seen), \
        "and in the supervisors' alerts list"
    assert any(e["type"] == "action" and e["action"] == "hangup" and e["actor"] == "fail-safe" for e in seen)
    assert call.ended_reason.startswith("hangup: supervision failed")
    assert not any(e["type"] == "flag" and e["category"] == "gang" for e in seen), "cut before the threat"
    assert not board.calls and engines.admission.live == 0, "the call left the live list and freed its slot"
    app = web.Application()
    app[ENGINES], app[BOARD] = engines, board
    health = await healthz(SimpleNamespace(app=app))
    assert health.status == 503 and b'"recordings"' in health.body

    filler.unlink()  # space is freed: what was accepted is intact, and the call's recording gets its end
    deadline = time.monotonic() + 3 * RETRY_WRITE_S
    while recordings.get(call.call_id).status == "recording" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert recordings.get(call.call_id).status == "incomplete"
    assert recordings.open_audio(call.call_id).duration_s > 1.0
    assert audit.verify().ok and next(audit.records()).kind == "call_start"
    engines.shutdown()
    recordings.close()
    audit.close()


async def stream_until_hung_up(ws: aiohttp.ClientWebSocketResponse, packets: list[bytes]) -> None:
    """Both tracks in real time until the server closes the stream."""
    with contextlib.suppress(ConnectionResetError):
        await send_media(ws, {"inbound": packets, "outbound": packets}, packet_s=0.02)


async def test_sigterm_while_the_disk_is_full_stops_serve_and_keeps_what_was_accepted(
        threat_call: Path, small_disk: Path, tmp_path: Path, midday_zone: str) -> None:
    port = free_port()
    proc = start_serve(port, small_disk, tmp_path / "serve.log")
    try:
        call = ulaw_packets(threat_call)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/media/twilio/{'m' * 32}")
            for msg in (CONNECTED, start_message(["inbound", "outbound"], debtor_tz=midday_zone)):
                await ws.send_json(msg)
            streaming = asyncio.create_task(stream_until_hung_up(ws, call))
            await asyncio.sleep(3)
            assert health(port)[1]["calls"], "the call is live"
            filler = await asyncio.to_thread(fill, small_disk)
            await asyncio.wait([streaming], timeout=20)
            deadline = time.monotonic() + 10
            while health(port)[1]["calls"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            status, body = health(port)
            assert streaming.done() and status == 503 and not body["calls"], "hung up, the fault shows, no live call"
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) is not None, "serve stopped on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
    filler.unlink()
    audit = AuditLog.open(small_disk / "v.db")
    assert audit.verify().ok and "call_start" in {r.kind for r in audit.records()}
    recordings = RecordingStore.open(audit.path, small_disk / "recordings")
    recordings.recover()
    assert [r.status for r in recordings.recordings()] == ["incomplete"]
    recordings.close()
    audit.close()
