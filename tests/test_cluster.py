"""Nodes sharing one PostgreSQL store: their calls land in one audit chain and one recordings table, QA samples each
agent's month across them and screening opens every node's recordings; a supervisor signed in on node A sees a call
running on node B and hangs it up from A's console (Chromium); sessions work on every node; the messages between
nodes are sealed, and a foreign, altered or old one is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psycopg
import pytest
from live_peers import (
    CONNECTED,
    PASSWORD,
    SLOW_S,
    free_port,
    health,
    send_media,
    signed_in_page,
    start_message,
    start_serve,
    stop_serve,
    ulaw_packets,
)
from playwright.async_api import expect

from voicebot.audit_pg import PgAuditLog
from voicebot.board import CallBoard
from voicebot.cluster import EVENTS, ClusterMessageError, seal, unseal
from voicebot.sql import open_db
from voicebot.web.auth import AuthSettings
from voicebot.web.throttle import Attempt, SharedLoginThrottle

KEY = bytes(range(32))


def test_messages_are_sealed_and_a_foreign_altered_or_old_one_is_refused() -> None:
    now = time.time()
    payload = seal(KEY, EVENTS, {"event": {"type": "final", "text": "您好"}, "node": "b", "at": now})
    assert "您好" not in payload and unseal(KEY, EVENTS, payload, now)["event"]["text"] == "您好"
    for key, channel, text, at in ((bytes(32), EVENTS, payload, now), (KEY, "voicebot_actions", payload, now),
                                   (KEY, EVENTS, payload[:-4] + "AAAA", now), (KEY, EVENTS, "not base64!", now),
                                   (KEY, EVENTS, payload, now + 600)):
        with pytest.raises(ClusterMessageError):
            unseal(key, channel, text, at)
    with pytest.raises(ClusterMessageError, match="limit"):
        seal(KEY, EVENTS, {"text": "x" * 8000})


def test_another_nodes_call_is_followed_alerted_on_and_kept_when_it_ends() -> None:
    board = CallBoard()
    heard = board.listen()
    board.take_remote("b", {"type": "call_start", "call_id": "c1", "adapter": "twilio", "mode": "in-path",
                            "agent_id": "a-9", "started_at": "2026-12-05T04:00:00+00:00", "zones": []})
    board.take_remote("b", {"type": "flag", "call_id": "c1", "leg": "agent", "rule": "r", "category": "threat",
                            "severity": "critical", "matched": "打断你的腿"})
    [live] = board.summaries()
    assert (live["node"], live["agent_id"], live["flags"], live["ended"]) == ("b", "a-9", 1, None)
    [alert] = board.alerts.values()
    assert (alert["agent_id"], alert["node"], alert["severity"]) == ("a-9", "b", "critical")
    board.take_remote("b", {"type": "call_end", "call_id": "c1", "reason": "hangup: supervisor", "duration_s": 12.0})
    assert board.remote == {} and board.call("c1")["ended"] == "hangup: supervisor"
    kinds = [heard.get_nowait()["type"] for _ in range(heard.qsize())]
    assert kinds == ["call_start", "flag", "alert", "call_end"]


def voicebot(data: Path, pg_url: str, *args: str, stdin: str = "") -> str:
    """Run a CLI command on the shared store, as any node's operator would; its output."""
    done = subprocess.run([str(Path(sys.executable).parent / "voicebot"), *args], input=stdin, capture_output=True,
                          text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "VOICEBOT_DATA_DIR": str(data), "VOICEBOT_DB": pg_url})
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def serve_nodes(pg_url: str, data: Path, *names: str) -> Iterator[list[int]]:
    """`voicebot serve` nodes on the store at `pg_url`, all with the data folder `data` (one machine: the same key
    files, one recordings folder), logging beside it; their ports. Every node started is stopped after."""
    procs, ports = [], []
    try:
        for name in names:
            ports.append(free_port(udp=(), tcp=(0,)))
            procs.append(start_serve(ports[-1], data, data.parent / f"{name}.log", "--node", name,
                                     env={"VOICEBOT_DB": pg_url}))
        yield ports
    finally:
        for proc in procs:
            stop_serve(proc)


async def short_call(session: aiohttp.ClientSession, port: int, packets: list[bytes], agent: str, zone: str) -> None:
    """A short Twilio call (emulated peer) with one utterance, to the node at `port`."""
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/media/twilio/{'m' * 32}")
    for message in (CONNECTED, start_message(["inbound"], debtor_tz=zone, agent_id=agent)):
        await ws.send_json(message)
    await send_media(ws, {"inbound": packets})
    await ws.close()


async def test_two_nodes_share_one_audit_chain_and_recordings_qa_samples_and_screens_across_them(
        pg_url: str, tmp_path: Path, shared: Path, midday_zone: str) -> None:
    data = tmp_path / "data"
    with serve_nodes(pg_url, data, "node-a", "node-b") as ports:
        speech = ulaw_packets(shared / "audio" / "tts-cmn" / "b02.wav")
        plan = [(ports[0], "a-1")] * 4 + [(ports[1], "a-1")] * 3 + [(ports[0], "a-2"), (ports[1], "a-2")]
        async with aiohttp.ClientSession() as session:
            for port, agent in plan:
                await short_call(session, port, speech, agent, midday_zone)
        for port in ports:
            for _ in range(100):
                if not health(port)[1]["calls"]:
                    break
                await asyncio.sleep(0.1)
    with PgAuditLog.open(pg_url, data / "audit.key") as log:
        report, records = log.verify(), list(log.records())
    assert report.ok and sum(r.kind == "call_end" for r in records) == len(plan), "every call in the one chain"
    assert not list(data.glob("*.db")), "no node keeps a SQLite store of its own"
    with psycopg.connect(pg_url) as conn:
        owners = {row[0].split(":")[1] for row in conn.execute("SELECT owner FROM recordings")}
    assert len(owners) == 2, "both nodes' recordings are in the one table"

    month = datetime.now(UTC).strftime("%Y-%m")
    sample = json.loads(voicebot(data, pg_url, "qa", "sample", "--month", month, "--json"))
    per_agent = Counter(item["agent_id"] for item in sample["items"])
    assert per_agent["a-1"] >= 0.15 * 7 and per_agent["a-2"] >= 1, "15% of each agent's month, both nodes' calls"
    screened = voicebot(data, pg_url, "recordings", "screen", "--workers", "1").splitlines()
    assert json.loads(screened[-1])["summary"]["screened"] == len(plan), "every node's recording opens and is screened"
    coverage = [json.loads(line) for line in voicebot(data, pg_url, "qa", "report", "--month", month,
                                                     "--json").splitlines()]
    assert {(c["agent_id"], c["recordings"]) for c in coverage} == {("a-1", 7), ("a-2", 2)}
    assert all(c["sampled_rate"] >= 0.15 for c in coverage)


async def keep_talking(ws: aiohttp.ClientWebSocketResponse, packets: list[bytes], limit_s: float) -> None:
    """Stream the speech again and again at real time until the server ends the call (or `limit_s` passes)."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):  # the server closed it between two packets
        while not ws.closed and time.monotonic() - started < limit_s:
            await send_media(ws, {"inbound": packets}, packet_s=0.02)


async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read what the server still sends until it closes the stream."""
    async for _ in ws:
        pass


@pytest.mark.browser
async def test_a_supervisor_on_node_a_hangs_up_a_call_running_on_node_b(pg_url: str, tmp_path: Path, shared: Path,
                                                                         midday_zone: str, browser) -> None:
    data = tmp_path / "data"
    with serve_nodes(pg_url, data, "node-a", "node-b") as ports:
        voicebot(data, pg_url, "users", "add", "sup", "--role", "supervisor", "--password-stdin",
                 stdin=PASSWORD + "\n")
        base_a, base_b = (f"http://127.0.0.1:{port}" for port in ports)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{base_b.replace('http', 'ws')}/media/twilio/{'m' * 32}")
            for message in (CONNECTED, start_message(["inbound"], debtor_tz=midday_zone, agent_id="agent-b")):
                await ws.send_json(message)
            talk = asyncio.create_task(keep_talking(
                ws, ulaw_packets(shared / "audio" / "tts-cmn" / "calls" / "call_ptp.wav"), 120))

            page = await signed_in_page(browser, base_a, "sup", csp := [])
            row = page.locator("tr", has_text="agent-b")
            await row.click(timeout=SLOW_S)
            await expect(page.locator("#detail-meta")).to_contain_text("twilio · in-path · node-b")
            await expect(page.locator("#transcript .line.leg-customer").first).to_be_visible(timeout=SLOW_S)
            await page.click('#action-bar button[data-action="hangup"]')
            await page.click('#action-bar button[data-action="confirm-hangup"]')
            await expect(page.locator("#detail-status")).to_contain_text("Ended: hangup: supervisor", timeout=SLOW_S)
            await asyncio.wait_for(talk, 30)
            await asyncio.wait_for(drain(ws), 10)
            assert ws.closed, "node B ended the call"
            assert csp == []

            cookies = {c["name"]: c["value"] for c in await page.context.cookies(base_a)}
            async with session.get(f"{base_b}/api/calls", cookies=cookies) as on_b:
                assert on_b.status == 200, "the session signed in on node A works on node B"
                [ended] = (await on_b.json())["calls"]
                assert ended["ended"] == "hangup: supervisor"
    with PgAuditLog.open(pg_url, data / "audit.key") as log:
        records = list(log.records())
        assert log.verify().ok
    hangups = [r for r in records if r.kind == "action" and r.actor == "sup"]
    assert [(r.data["action"], r.data["reason"]) for r in hangups] == [("hangup", "supervisor")]
    assert {r.kind for r in records} >= {"call_start", "call_end", "login"}


def test_wrong_passwords_spread_over_two_nodes_cannot_exceed_the_throttle(pg_url: str) -> None:
    nodes = [open_db(pg_url) for _ in range(2)]
    throttles = [SharedLoginThrottle(db, AuthSettings()) for db in nodes]
    counted: list[Attempt] = []

    def attacker(n: int) -> None:
        for _ in range(10):
            attempt = throttles[n % 2].reserve("sup", f"10.0.0.{n}")
            if attempt.wait_s == 0:
                counted.append(attempt)

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counted) == AuthSettings().max_failures_user, "five passwords checked, whichever node was asked"
    throttles[1].succeeded(counted[0])
    assert throttles[0].reserve("sup", "10.0.0.9").wait_s == 0, "a success on one node clears the user everywhere"
    for db in nodes:
        db.close()
