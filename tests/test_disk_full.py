"""A full disk mid-call (the data folder on a small real tmpfs): the call fails safe, leaves the live list, the fault
shows, and everything accepted before stays intact."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
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
