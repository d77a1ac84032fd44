"""Working accounts over weeks under a strategy: before each pass every account is planned again from its debt's
state and dials (promises past their date are marked broken first); after each dial the strategy, not a retry
count, says when the debt is next wanted. The pre-dial gate still refuses anything outside the pack's rules."""

from __future__ import annotations

from datetime import datetime

from compliance_rules.pack import RulePack
from compliance_rules.timing import Attempt, pre_dial_check
from voicebot.campaigns.accounts import Account, Step
from voicebot.campaigns.importer import stage_for
from voicebot.campaigns.lifecycle import DebtBook, DebtStatus
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import Strategy
from voicebot.campaigns.tasks import TaskBook


class Planner:
    """Plans a store's accounts under a strategy and the debts' lifecycle."""

    def __init__(self, store: CampaignStore, book: DebtBook, strategy: Strategy, tasks: TaskBook,
                 pack: RulePack) -> None:
        self.store, self.book, self.strategy, self.tasks, self.pack = store, book, strategy, tasks, pack

    def replan(self, now: datetime, campaign: str | None = None) -> int:
        """Mark overdue promises broken, then set every account's next due time from the strategy; how many moved.

        Debts' states, dials and last changes are read in three queries, so 100,000 accounts plan in seconds."""
        broken = set(self.book.break_overdue_promises(now))
        statuses, changed = self.book.all_statuses(), self.book.last_changes()
        dials = self.store.dial_times()
        moved: list[tuple[Account, Step]] = []
        for account in self.store.accounts(campaign):
            if account.debt in broken and stage_for(account.days_overdue_at(now)) == "late":
                self.tasks.raise_task("broken_promise", debt=account.debt, campaign=account.campaign,
                                      account_id=account.account_id, cause="lifecycle:promise_date_passed", at=now,
                                      assignee=account.agent_id)
            if account.state == "callback" and account.next_due is not None and account.next_due > now:
                continue  # an agreed callback keeps its time
            step = self._plan(account, statuses.get(account.debt) or DebtStatus(debt=account.debt),
                              dials.get(account.debt, []), changed.get(account.debt))
            if (step.state, step.next_due) != (account.state, account.next_due):
                moved.append((account, step))
        self.store.set_steps(moved, now)
        return len(moved)

    def plan(self, account: Account) -> Step:
        """The account's state and next due time under the strategy, read afresh."""
        history = self.book.history(account.debt)
        changed_at = datetime.fromisoformat(history[-1]["at"]) if history else None
        return self._plan(account, self.book.status(account.debt), [a for a, _ in self.store.history(account.debt)],
                          changed_at)

    def _plan(self, account: Account, status: DebtStatus, dials: list[Attempt], changed_at: datetime | None) -> Step:
        """Blocked while its debt is stopped, done while nothing is wanted (a promise running), pending otherwise:
        at the planned time, or the first the pack's gate allows after it (calling hours, cadence)."""
        if status.stopped:
            return Step(state="blocked", next_due=None)
        times = [a.at for a in dials]
        assigned = account.imported_at or min(times, default=None)
        if assigned is None:
            return Step(state="pending", next_due=None)
        due = self.strategy.next_dial(status, assigned_at=assigned, dials=times, changed_at=changed_at)
        if due is None:
            return Step(state="done", next_due=None)
        gate = pre_dial_check(self.pack, due, account.zones, dials)
        return Step(state="pending", next_due=gate.next_allowed if not gate.allowed and gate.next_allowed else due)

    def hand_over(self, account: Account, kind: str | None, call_id: str | None, at: datetime) -> None:
        """Raise the task the strategy gives this outcome to people, if any, for the account's agent."""
        task = self.strategy.tasks.get(kind or "")
        if task is not None:
            self.tasks.raise_task(task, debt=account.debt, campaign=account.campaign, account_id=account.account_id,
                                  cause=f"call:{call_id}", at=at, assignee=account.agent_id)

    def after_dial(self, account: Account, policy_step: Step) -> Step:
        """After a dial (its outcome already in the debt's lifecycle): an agreed callback keeps its time; otherwise
        the plan decides."""
        return policy_step if policy_step.state == "callback" else self.plan(account)
