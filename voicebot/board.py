"""The live board: each call's history, the calls that ended today, and the alerts a supervisor must see, fed to
every listener (consoles, `voicebot monitor`); with a shared store, the other nodes' calls too (`voicebot.cluster`)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from voicebot.stages.publish import Event

if TYPE_CHECKING:
    from voicebot.call import Call

log = logging.getLogger(__name__)

EVENTS_KEPT = 20_000
"""Events a call keeps for the console beyond each leg's latest partial: a two-hour call's finals, flags and actions
fit many times over."""
ENDED_KEPT = 500
"""Ended calls the board keeps for the console's "today" list (and at most a day)."""
ALERTS_KEPT = 2_000
"""Alerts the board keeps (and at most a day)."""
KEPT_FOR = timedelta(days=1)
ALERT_SEVERITIES = ("critical", "high")
WINDOW_RULE = "window.outside_hours"


class UnknownAlertError(KeyError):
    """No alert with this id is kept (never raised, or older than a day)."""


class CallHistory:
    """A call's events for the console and its end: every event but partial transcripts, of which each leg keeps
    only its latest (the next partial or its final supersedes it), so a long call's history is whole and bounded."""

    def __init__(self) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=EVENTS_KEPT)
        self._partials: dict[str, Event] = {}

    def append(self, event: Event) -> None:
        """Keep an event; a partial replaces its leg's previous one, a final drops it."""
        if event["type"] in ("partial", "final"):
            self._partials.pop(event["leg"], None)
        if event["type"] == "partial":
            self._partials[event["leg"]] = event
        else:
            self._events.append(event)

    def __iter__(self) -> Iterator[Event]:
        yield from self._events
        yield from self._partials.values()


def alert_kind(event: Event) -> str | None:
    """What a supervisor must be alerted to in an event, if anything: a critical or high flag (`violation`), a
    customer's dispute or complaint (`signal`, the signals a pack alerts on), a fail-safe (`fail_safe`) or the call
    clock's warning or hang-up (`out_of_hours`)."""
    kind = event["type"]
    if kind == "flag" and event.get("rule") != WINDOW_RULE:  # the clock's own action is the alert
        if event.get("signal"):
            return "signal" if event.get("action") == "alert" else None
        return "violation" if event.get("severity") in ALERT_SEVERITIES else None
    if kind == "error" and event.get("fatal"):
        return "fail_safe"
    if kind == "action" and event.get("rule") == WINDOW_RULE:
        return "out_of_hours"
    return None


def _severity(kind: str, event: Event) -> str:
    if kind == "fail_safe" or (kind == "out_of_hours" and event.get("action") == "hangup"):
        return "critical"
    return event.get("severity") or "high"


class RemoteCall:
    """Another node's live call, as its events tell it."""

    def __init__(self, node: str, call_id: str) -> None:
        self.node, self.call_id = node, call_id
        self.start: dict[str, Any] = {}
        self.events = CallHistory()
        self.muted: set[str] = set()

    def take(self, event: Event) -> None:
        """Follow one event: its start names the call, actions (un)mute legs, the rest is history."""
        if event["type"] == "call_start":
            self.start = event
            return
        if event["type"] == "action" and event.get("action") in ("mute", "unmute"):
            (self.muted.add if event["action"] == "mute" else self.muted.discard)(event.get("leg") or "agent")
        self.events.append(event)

    def summary(self, now: datetime) -> dict[str, Any]:
        """What the console's call list shows of it, with its events."""
        start = self.start
        started = start.get("started_at")
        elapsed = (now - datetime.fromisoformat(started)).total_seconds() if started else 0.0
        events = list(self.events)
        return {"call_id": self.call_id, "node": self.node, "adapter": start.get("adapter", ""),
                "mode": start.get("mode", ""), "agent_id": start.get("agent_id"), "started_at": started,
                "zones": start.get("zones", []), "muted": sorted(self.muted), "ended": None,
                "flags": sum(1 for e in events if e["type"] == "flag" and not e.get("signal")),
                "elapsed_s": round(max(elapsed, 0.0), 1), "warn_heard_by": start.get("warn_heard_by", "agent"),
                "events": events}


class CallBoard:
    """The live calls of a process, the calls that ended in the last day, the alerts raised on them, and the
    listeners that follow every event."""

    def __init__(self, *, now: Callable[[], datetime] | None = None) -> None:
        self.calls: dict[str, Call] = {}
        self.ended: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        """Calls that ended, oldest first: each its summary with `events`."""
        self.alerts: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self.remote: dict[str, RemoteCall] = {}
        """The other nodes' live calls, by id."""
        self._ids = itertools.count(1)
        self._now = now or (lambda: datetime.now(UTC))
        self._listeners: set[asyncio.Queue[Event]] = set()

    def listen(self, maxsize: int = 1000) -> asyncio.Queue[Event]:
        """A queue that receives every event of every call from now on."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._listeners.add(q)
        return q

    def unlisten(self, q: asyncio.Queue[Event]) -> None:
        """Stop feeding a listener."""
        self._listeners.discard(q)

    def publish(self, event: Event) -> None:
        """Send an event to every listener, followed by the alert it raises, if any."""
        self._send(event)
        kind = alert_kind(event)
        if kind is not None:
            self._send(self._raise(kind, event))

    def take_remote(self, node: str, event: Event) -> None:
        """An event of another node's call: followed in its mirror (kept as ended at its end), sent to every
        listener marked with the node, and alerted on as a local call's would be."""
        event = {**event, "node": node}
        mirror = self.remote.get(event["call_id"])
        if mirror is None:
            mirror = self.remote[event["call_id"]] = RemoteCall(node, event["call_id"])
        elif event["type"] == "call_start" and mirror.start:  # a node's reminder of a call we follow already
            return
        mirror.take(event)
        if event["type"] == "call_end":
            summary = mirror.summary(self._now())
            self.keep_ended({**summary, "ended": event.get("reason") or "ended",
                             "elapsed_s": event.get("duration_s", summary["elapsed_s"])})
            del self.remote[event["call_id"]]
        self.publish(event)

    def keep_ended(self, summary: dict[str, Any]) -> None:
        """Keep an ended call (its summary with `events`) for the day's list, stamped with when it ended."""
        self.ended[summary["call_id"]] = {**summary, "ended_at": self._now().isoformat()}
        self._forget_old(self.ended, ENDED_KEPT, "ended_at")

    def call(self, call_id: str) -> dict[str, Any] | None:
        """A live or ended call's summary with its events, if the board has it."""
        if (live := self.calls.get(call_id)) is not None:
            return {**live.summary(), "events": list(live.events)}
        if (mirror := self.remote.get(call_id)) is not None:
            return mirror.summary(self._now())
        return self.ended.get(call_id)

    def summaries(self) -> list[dict[str, Any]]:
        """Every live call's (the other nodes' too) and every kept ended call's summary with its events."""
        return ([{**c.summary(), "events": list(c.events)} for c in self.calls.values()]
                + [m.summary(self._now()) for m in self.remote.values()] + list(self.ended.values()))

    def acknowledge(self, alert_id: int, username: str) -> dict[str, Any]:
        """Mark an alert acknowledged by a user (the first acknowledgement stands) and tell every listener."""
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise UnknownAlertError(alert_id)
        if alert["acked_by"] is None:
            alert.update(acked_by=username, acked_at=self._now().isoformat())
            self._send({"type": "alert_ack", "id": alert_id, "call_id": alert["call_id"],
                        "acked_by": username, "acked_at": alert["acked_at"]})
        return alert

    def _raise(self, kind: str, event: Event) -> Event:
        live, mirror = self.calls.get(event["call_id"]), self.remote.get(event["call_id"])
        agent = live.info.agent_id if live else mirror.start.get("agent_id") if mirror else None
        words = event.get("matched") or event.get("reason") or event.get("error") or ""
        alert = {"type": "alert", "id": next(self._ids), "kind": kind, "call_id": event["call_id"],
                 "agent_id": agent, "node": event.get("node"), "leg": event.get("leg"),
                 "severity": _severity(kind, event),
                 "category": event.get("category"), "rule": event.get("rule"), "words": words,
                 "audio_s": event.get("audio_s"), "at": self._now().isoformat(), "acked_by": None, "acked_at": None}
        self.alerts[alert["id"]] = alert
        self._forget_old(self.alerts, ALERTS_KEPT, "at")
        return alert

    def _forget_old(self, kept: collections.OrderedDict[Any, dict[str, Any]], most: int, stamp: str) -> None:
        oldest = (self._now() - KEPT_FOR).isoformat()
        while kept and (len(kept) > most or next(iter(kept.values()))[stamp] < oldest):
            kept.popitem(last=False)

    def _send(self, event: Event) -> None:
        """Feed every listener; one that has fallen its queue's size behind is dropped."""
        for q in list(self._listeners):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("dropping a listener that fell %d events behind", q.qsize())
                self._listeners.discard(q)
