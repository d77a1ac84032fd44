"""Call-time rules: the local-hours window, dial cadence per debt, the pre-dial gate and the live-call clock."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from compliance_rules.pack import CallWindow, RulePack

SEARCH_DAYS = 40


@dataclass(frozen=True, slots=True)
class Attempt:
    """A past dial attempt for a debt, and whether it reached a conversation with the debtor."""

    at: datetime
    conversation: bool = False


@dataclass(frozen=True, slots=True)
class Agreement:
    """The debtor agreed to be called at a time outside the window; `evidence` says where that was recorded."""

    start: datetime
    end: datetime
    evidence: str


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a call may be placed now; if not, why, and the earliest time it may."""

    allowed: bool
    reasons: tuple[str, ...]
    zones: tuple[str, ...]
    next_allowed: datetime | None = None
    evidence: str | None = None


def resolve_zones(zones: Sequence[str | None], window: CallWindow) -> tuple[str, ...]:
    """The zones a call must satisfy: every known one; an unknown or invalid zone adds all fallback zones."""
    resolved: list[str] = []
    for zone in zones or [None]:
        try:
            resolved.append(zoneinfo.ZoneInfo(zone).key if zone else "")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            resolved.append("")
        if not resolved[-1]:
            resolved.pop()
            resolved.extend(window.fallback_zones)
    return tuple(dict.fromkeys(resolved))


def in_window(window: CallWindow, at: datetime, zones: Sequence[str]) -> bool:
    """Whether `at` falls inside the window's local hours in every zone."""
    return all(window.start <= at.astimezone(zoneinfo.ZoneInfo(z)).time() < window.end for z in zones)


def window_end(window: CallWindow, at: datetime, zones: Sequence[str]) -> datetime:
    """The earliest moment after `at` at which some zone's window closes (the strictest reading)."""
    ends = []
    for zone in zones:
        local = at.astimezone(zoneinfo.ZoneInfo(zone))
        end = datetime.combine(local.date(), window.end, tzinfo=local.tzinfo)
        ends.append(end if end > local else end + timedelta(days=1))
    return min(ends)


def next_open(window: CallWindow, at: datetime, zones: Sequence[str]) -> datetime | None:
    """The earliest moment at or after `at` inside the window in every zone."""
    if in_window(window, at, zones):
        return at
    candidates = []
    for zone in zones:
        tz = zoneinfo.ZoneInfo(zone)
        local_date = at.astimezone(tz).date()
        starts = (datetime.combine(local_date + timedelta(days=day), window.start, tzinfo=tz)
                  for day in range(SEARCH_DAYS))
        candidates += [start for start in starts if start >= at]
    return next((c for c in sorted(candidates) if in_window(window, c, zones)), None)


def cadence_decision(pack: RulePack, attempts: Sequence[Attempt], at: datetime) -> tuple[list[str], datetime]:
    """Reasons the pack's cadence forbids a dial at `at`, and the earliest time it allows one."""
    reasons, earliest = [], at
    for limit in pack.cadence:
        since = at - timedelta(days=limit.days)
        recent = sorted(a.at for a in attempts if since < a.at <= at)
        if len(recent) >= limit.calls:
            reasons.append(f"cadence: {len(recent)} calls in the last {limit.days} day(s), limit {limit.calls}")
            earliest = max(earliest, recent[len(recent) - limit.calls] + timedelta(days=limit.days))
    if pack.quiet_days_after_conversation:
        talks = [a.at for a in attempts if a.conversation and a.at <= at]
        quiet_until = max(talks, default=None)
        if quiet_until and at < quiet_until + timedelta(days=pack.quiet_days_after_conversation):
            reasons.append(f"cadence: a conversation took place within {pack.quiet_days_after_conversation} days")
            earliest = max(earliest, quiet_until + timedelta(days=pack.quiet_days_after_conversation))
    return reasons, earliest


def pre_dial_check(pack: RulePack, at: datetime, zones: Sequence[str | None], attempts: Sequence[Attempt] = (),
                   agreement: Agreement | None = None) -> Decision:
    """The pre-dial gate: refuse calls outside the window in any zone, or over the pack's cadence.

    A callback the debtor agreed to is made with their direct consent: it may fall outside the window and is
    not held back by the cadence limits (Regulation F 1006.14(b)(3) excludes such calls from them)."""
    if at.tzinfo is None:
        raise ValueError("the dial time must be timezone-aware")
    resolved = resolve_zones(zones, pack.window)
    agreed = agreement is not None and agreement.start <= at <= agreement.end
    reasons, earliest = cadence_decision(pack, attempts, at) if not agreed else ([], at)
    if not agreed and not in_window(pack.window, at, resolved):
        reasons.append(f"outside {pack.window.start:%H:%M}–{pack.window.end:%H:%M} local time in "
                       + ", ".join(resolved))
    if not reasons:
        return Decision(allowed=True, reasons=(), zones=resolved, evidence=agreement.evidence if agreed else None)
    return Decision(allowed=False, reasons=tuple(reasons), zones=resolved,
                    next_allowed=next_open(pack.window, earliest, resolved))


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """A live call neared (`warn`) or reached (`end_call`) the end of the permitted hours."""

    action: str
    at: datetime
    reason: str


class CallClock:
    """Watches a live call's wall time: warns before the window closes and ends the call when it does."""

    def __init__(self, pack: RulePack, started: datetime, zones: Sequence[str | None],
                 agreement: Agreement | None = None) -> None:
        self.zones = resolve_zones(zones, pack.window)
        self.window = pack.window
        self.agreement = agreement
        self.started_inside = in_window(pack.window, started, self.zones)
        self.closes = window_end(pack.window, started, self.zones) if self.started_inside else started
        if agreement and agreement.start <= started <= agreement.end:
            self.closes = max(self.closes, agreement.end)
        self.warn_at = self.closes - timedelta(minutes=pack.window.warn_before_end_min)
        self._sent: set[str] = set()

    def tick(self, now: datetime) -> list[ClockEvent]:
        """Events due at `now`, each once."""
        due = []
        if now >= self.warn_at and "warn" not in self._sent:
            due.append(ClockEvent("warn", now, self._closing_words()))
        if now >= self.closes and "end_call" not in self._sent:
            due.append(ClockEvent("end_call", now, "permitted calling hours ended" if self.started_inside else
                                  f"outside the permitted hours, {self._hours()}"))
        self._sent.update(e.action for e in due)
        return due

    def _closing_words(self) -> str:
        """When the permitted hours end, in the debtor's zone(s) (or that the call began outside them)."""
        if not self.started_inside:
            return f"the call began outside the permitted hours, {self._hours()}"
        local = ", ".join(f"{self.closes.astimezone(zoneinfo.ZoneInfo(z)):%H:%M} {z}" for z in self.zones)
        return f"permitted calling hours end at {local}"

    def _hours(self) -> str:
        return f"{self.window.start:%H:%M}–{self.window.end:%H:%M} local time in {', '.join(self.zones)}"
