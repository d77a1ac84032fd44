"""The nodes sharing a PostgreSQL store follow each other's calls through it, with no broker to run: each node sends
every event of its own calls on NOTIFY `voicebot_events` and takes the other nodes' into its board; a supervisor's
action on another node's call goes to that node on NOTIFY `voicebot_actions`. Messages are sealed with a key derived
from the audit key every node holds (PostgreSQL's notification queue may spill to disk, and transcripts are never
kept in the clear), and one older than a minute is refused."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from voicebot.board import CallBoard
from voicebot.stages.publish import Event

log = logging.getLogger(__name__)

EVENTS, ACTIONS, HELLO = "voicebot_events", "voicebot_actions", "voicebot_hello"
MAX_PAYLOAD = 7_900
"""PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more."""
MAX_AGE_S = 60.0
"""A message older than this is refused (a replayed hang-up, a node's clock far off)."""
NOT_SHARED = ("alert", "alert_ack")
"""Each node raises its own alerts from the events."""


class ClusterMessageError(ValueError):
    """A message not sealed with this cluster's key, altered, too old or too large."""


class ClusterUnavailableError(RuntimeError):
    """The connection to the shared store is down; the other nodes cannot be reached now."""


def seal(key: bytes, channel: str, message: dict[str, Any]) -> str:
    """A message as a NOTIFY payload on `channel`: AES-GCM, bound to the channel, base64."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(message, ensure_ascii=False).encode(), channel.encode())
    payload = base64.b64encode(nonce + sealed).decode()
    if len(payload) > MAX_PAYLOAD:
        raise ClusterMessageError(f"a {len(payload)}-byte message is over NOTIFY's limit")
    return payload


def unseal(key: bytes, channel: str, payload: str, now: float) -> dict[str, Any]:
    """The message a payload on `channel` carries; ClusterMessageError if it is not ours, altered or too old."""
    try:
        raw = base64.b64decode(payload, validate=True)
        message = json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], channel.encode()))
    except (ValueError, InvalidTag):
        raise ClusterMessageError("a message that is not sealed with this cluster's key") from None
    if not isinstance(message, dict) or abs(now - float(message.get("at", 0))) > MAX_AGE_S:
        raise ClusterMessageError("a message too old to act on")
    return message


class ClusterBus:
    """This node's link to the others through the shared store, for its board."""

    def __init__(self, url: str, node: str, key: bytes, board: CallBoard) -> None:
        self.url, self.node, self._key, self.board = url, node, key, board
        self._send: psycopg.AsyncConnection | None = None
        self.refused = 0
        """Messages refused (not ours, altered, too old)."""

    async def run(self) -> None:
        """Follow the other nodes until cancelled, reconnecting (with back-off) when the connection drops."""
        delay = 0.5
        while True:
            try:
                await self._follow()
            except (psycopg.OperationalError, OSError) as e:
                log.warning("cluster: the shared store's connection failed (%s); reconnecting", type(e).__name__)
            self._send = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def send_action(self, node: str, call_id: str, action: str, leg: str | None, user: str) -> None:
        """Ask `node` to carry out a supervisor's action on its call (it audits and shows it)."""
        await self._notify(ACTIONS, {"to": node, "call_id": call_id, "action": action, "leg": leg, "user": user})

    async def _follow(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listen, \
                await psycopg.AsyncConnection.connect(self.url, autocommit=True) as send:
            for channel in (EVENTS, ACTIONS, HELLO):
                await listen.execute(f"LISTEN {channel}")
            self._send = send
            queue = self.board.listen(maxsize=0)  # unbounded: a NOTIFY takes well under a millisecond
            forward = asyncio.create_task(self._forward(queue))
            try:
                await self._notify(HELLO, {})
                async for note in listen.notifies():
                    await self._receive(note.channel, note.payload)
            finally:
                self.board.unlisten(queue)
                forward.cancel()

    async def _forward(self, queue: asyncio.Queue[Event]) -> None:
        """Send every event of this node's own calls."""
        while True:
            event = await queue.get()
            if "node" not in event and event["type"] not in NOT_SHARED:
                try:
                    await self._notify(EVENTS, {"event": event})
                except ClusterMessageError:
                    log.warning("cluster: an event of call %s is too large to share", event.get("call_id"))

    async def _notify(self, channel: str, message: dict[str, Any]) -> None:
        if self._send is None:
            raise ClusterUnavailableError("the shared store cannot be reached now; try again")
        payload = seal(self._key, channel, {**message, "node": self.node, "at": time.time()})
        await self._send.execute("SELECT pg_notify(%s, %s)", [channel, payload])

    async def _receive(self, channel: str, payload: str) -> None:
        try:
            message = unseal(self._key, channel, payload, time.time())
        except ClusterMessageError as e:
            self.refused += 1
            log.warning("cluster: refused a message on %s (%s)", channel, e)
            return
        if message.get("node") == self.node:
            return
        if channel == EVENTS:
            self.board.take_remote(str(message["node"]), message["event"])
        elif channel == HELLO:
            await self._remind()
        elif channel == ACTIONS and message.get("to") == self.node:
            self._act(message)

    async def _remind(self) -> None:
        """A node (re)joined: tell it which calls this node holds."""
        for call in list(self.board.calls.values()):
            summary = call.summary()
            await self._notify(EVENTS, {"event": {"type": "call_start", **{k: summary[k] for k in (
                "call_id", "adapter", "mode", "agent_id", "started_at", "zones", "warn_heard_by")}}})

    def _act(self, message: dict[str, Any]) -> None:
        call = self.board.calls.get(str(message.get("call_id")))
        if call is None or call.ended_reason is not None:
            log.info("cluster: action for a call this node no longer holds")
            return
        call.act(message["action"], actor=str(message["user"]), reason="supervisor", leg=message.get("leg"))
        log.info("cluster: action %s on call %s from node %s", message["action"], call.call_id, message["node"])
