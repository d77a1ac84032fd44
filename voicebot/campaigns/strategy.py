"""A collection strategy as data: which script for which days-overdue band, the minimum contacts the sources ask
for, promise reminders and follow-ups, and what each outcome hands to people; and when a debt is next due under it.

Minimum contacts are planned inside the pack's maximum cadence, window and quiet days: the pre-dial gate still
refuses any dial that would break them, so a plan only says when a dial is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, get_args

from compliance_rules.pack import FieldValidator, RulePackError, read_yaml
from scripts_library import bundled_scripts
from voicebot.campaigns.lifecycle import DebtStatus
from voicebot.dialog_data import OutcomeKind

STRATEGIES_DIR = Path(__file__).with_name("strategies")
TASK_KINDS = ("hardship", "complaint", "dispute_review", "transfer", "broken_promise")
OUTCOME_KINDS: tuple[str, ...] = get_args(OutcomeKind)
"""A call's outcomes, as the bot's dialog names them."""
MIN_GAP = timedelta(hours=4)
"""Planned dials of one debt are at least this far apart (the pack's own cadence may ask for more)."""


class StrategyError(RulePackError):
    """A strategy file that cannot be used, by file and line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageBand:
    """Days overdue from `from_day` to `to_day` (None: and beyond) use `script`."""

    name: str
    from_day: int
    to_day: int | None
    script: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactTarget:
    """At least `attempts` dials in all within `within_days` of the debt's assignment."""

    attempts: int
    within_days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Strategy:
    """A loaded, validated strategy."""

    name: str
    path: Path
    pack: str
    stages: tuple[StageBand, ...]
    first_within: timedelta
    targets: tuple[ContactTarget, ...]
    remind_every: timedelta
    promise_reminder_before: timedelta
    broken_follow_up_after: timedelta
    tasks: dict[str, str]
    """Outcome kind → the kind of human task it creates."""

    def stage(self, days_overdue: int) -> StageBand:
        """The band a debt this many days overdue is in (the last band for anything beyond)."""
        for band in self.stages:
            if band.from_day <= days_overdue and (band.to_day is None or days_overdue <= band.to_day):
                return band
        return self.stages[0] if days_overdue < self.stages[0].from_day else self.stages[-1]

    def next_dial(self, status: DebtStatus, *, assigned_at: datetime, dials: list[datetime],
                  changed_at: datetime | None = None) -> datetime | None:
        """When the debt is next wanted on the phone, or None (stopped, or waiting for a promised payment).

        `dials` are its past dials (answered or not, gate refusals excluded), `changed_at` when its state last
        changed. The pre-dial gate then moves the time into the window and within the cadence."""
        last = max(dials, default=None)
        if status.stopped:
            return None
        if status.state == "promised" and status.promise_date is not None:
            remind = datetime.combine(status.promise_date, time(0), UTC) - self.promise_reminder_before
            return None if last is not None and last >= remind else remind
        if status.state == "promise_broken" and changed_at is not None:
            follow = changed_at + self.broken_follow_up_after
            return follow if last is None or last < follow else last + self.remind_every
        if last is None:
            return assigned_at
        for target in self.targets:
            if len(dials) < target.attempts:
                deadline = assigned_at + timedelta(days=target.within_days)
                gap = (deadline - last) / (target.attempts - len(dials) + 1)
                return last + max(gap, MIN_GAP)
        return last + self.remind_every


    def contacts_met(self, *, assigned_at: datetime, dials: list[datetime], now: datetime) -> dict[str, bool | None]:
        """Whether each minimum was met: the first dial within `first_within` of assignment, then each target's
        attempts within its days; None while its deadline has not come and it is not met yet."""
        def met(count: int, deadline: datetime) -> bool | None:
            done = sum(d <= deadline for d in dials) >= count
            return True if done else None if now < deadline else False

        checks = {"first": met(1, assigned_at + self.first_within)}
        for t in self.targets:
            checks[f"{t.attempts}_in_{t.within_days}d"] = met(t.attempts, assigned_at + timedelta(days=t.within_days))
        return checks


def strategy_path(name_or_path: str | Path) -> Path:
    """A bundled strategy by name (`cn-standard`), or a path to a strategy file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    bundled = STRATEGIES_DIR / f"{name_or_path}.yaml"
    if not bundled.is_file():
        known = ", ".join(sorted(p.stem for p in STRATEGIES_DIR.glob("*.yaml")))
        raise StrategyError(path, None, f"no such strategy; bundled strategies: {known}")
    return bundled


def strategy_for_pack(pack: str) -> Strategy:
    """The bundled strategy written for a pack; StrategyError when there is none."""
    for path in sorted(STRATEGIES_DIR.glob("*.yaml")):
        strategy = load_strategy(path)
        if strategy.pack == pack:
            return strategy
    raise StrategyError(STRATEGIES_DIR, None, f"no bundled strategy for pack {pack!r}; name one with --strategy")


def load_strategy(name_or_path: str | Path) -> Strategy:
    """Read and validate a strategy; StrategyError names the file, line and field at fault."""
    path = strategy_path(name_or_path)
    return _Validator(path, StrategyError).strategy(read_yaml(path, StrategyError))


class _Validator(FieldValidator):
    """Turns parsed YAML into a Strategy, raising StrategyError at the first fault."""

    def strategy(self, data: Any) -> Strategy:
        top = self.mapping(data, "strategy", {"strategy", "pack", "stages", "contacts", "promises", "tasks"},
                           {"strategy", "pack", "stages", "contacts"})
        contacts = self.mapping(top["contacts"], "contacts", {"first_within_hours", "minimum", "remind_every_days"},
                                {"first_within_hours", "minimum", "remind_every_days"})
        promises = self.mapping(top.get("promises") or {}, "promises",
                                {"remind_days_before", "follow_up_days_after_broken"}, set())
        tasks = self.mapping(top.get("tasks") or {}, "tasks", set(OUTCOME_KINDS), set())
        return Strategy(
            name=self.text(top["strategy"], "strategy"), path=self.path, pack=self.text(top["pack"], "pack"),
            stages=self.stages(top["stages"]),
            first_within=timedelta(hours=self.number(contacts, "first_within_hours", 0, 72)),
            targets=self.targets(contacts["minimum"]),
            remind_every=timedelta(days=self.number(contacts, "remind_every_days", 1, 60)),
            promise_reminder_before=timedelta(days=self.number(promises, "remind_days_before", 0, 7, default=1)),
            broken_follow_up_after=timedelta(days=self.number(promises, "follow_up_days_after_broken", 0, 14,
                                                              default=1)),
            tasks={str(k): self.choice(v, f"tasks.{k}", TASK_KINDS) for k, v in tasks.items()})

    def number(self, parent: dict, key: str, low: int, high: int, default: int | None = None) -> int:
        value = parent.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(parent, f"{key} must be a whole number from {low} to {high}")
        return value

    def stages(self, raw: Any) -> tuple[StageBand, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail(raw, "stages must be a non-empty list")
        bands = []
        for item in raw:
            band = self.mapping(item, "stage", {"name", "from_day", "to_day", "script"}, {"name", "from_day", "script"})
            to_day = self.number(band, "to_day", 0, 100_000) if "to_day" in band else None
            script = self.text(band["script"], "stage script")
            if script not in bundled_scripts():
                raise self.fail(script, f"no bundled script {script!r} (bundled: {', '.join(bundled_scripts())})")
            bands.append(StageBand(name=self.text(band["name"], "stage name"),
                                   from_day=self.number(band, "from_day", 0, 100_000), to_day=to_day, script=script))
        for before, after, item in zip(bands, bands[1:], raw[1:], strict=False):
            if before.to_day is None or after.from_day != before.to_day + 1:
                raise self.fail(item, f"stage {after.name} must start the day after {before.name} ends")
        return tuple(bands)

    def targets(self, raw: Any) -> tuple[ContactTarget, ...]:
        if not isinstance(raw, list):
            raise self.fail(raw, "contacts.minimum must be a list")
        targets = [ContactTarget(attempts=self.number(t, "attempts", 1, 50),
                                 within_days=self.number(t, "within_days", 1, 90))
                   for t in (self.mapping(t, "minimum", {"attempts", "within_days"}, {"attempts", "within_days"})
                             for t in raw)]
        for before, after, item in zip(targets, targets[1:], raw[1:], strict=False):
            if after.attempts <= before.attempts or after.within_days <= before.within_days:
                raise self.fail(item, "each minimum counts all attempts so far: more attempts in more days")
        return tuple(targets)
