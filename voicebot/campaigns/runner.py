"""Campaign runs: each due account passes the pre-dial gate, is dialled, retried by policy; every step is stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from compliance_rules.pack import RulePack
from compliance_rules.timing import Agreement, Decision, pre_dial_check, resolve_zones
from voicebot.audit import AuditLog
from voicebot.campaigns.accounts import Account, Step, stamp
from voicebot.campaigns.collect import Planner
from voicebot.campaigns.dialer import CallResult, DebtorCall, Dialer
from voicebot.campaigns.lifecycle import DebtBook, DebtStatus
from voicebot.campaigns.pauses import Pauses, is_paused
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import Strategy
from voicebot.campaigns.tasks import TaskBook

log = logging.getLogger(__name__)

NOT_CONVERSATION = frozenset({"wrong_person", "third_party", "third_party_callback", "voicemail", "silence",
                              "no_contact"})
"""Answered calls that were no conversation with the debtor (they start no quiet period after a conversation)."""
CALLBACK_KINDS = frozenset({"callback", "third_party_callback"})
"""Outcomes that schedule a call at `callback_at`; only the debtor's own (`callback`) may fall outside the hours."""
OUTCOME_ALIASES = (("promise_date", "ptp_date"), ("promise_amount", "ptp_amount"))
COLLECT_IDLE = timedelta(minutes=5)
"""A collection run looks again at least this often (new imports, promises falling due)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Unanswered, busy and failed dials are retried up to `max_attempts` dials, `retry_after` apart."""

    max_attempts: int = 3
    retry_after: timedelta = timedelta(minutes=60)
    callback_grace: timedelta = timedelta(minutes=30)
    """How long after an agreed callback time the agreement still allows a call outside the usual hours."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max attempts must be at least 1")
        if self.retry_after < timedelta(0) or self.callback_grace < timedelta(0):
            raise ValueError("retry delay and callback grace cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptReport:
    """One account's turn in a pass, without personal data: what happened and what comes next."""

    campaign: str
    account_id: str
    status: str
    kind: str | None = None
    state: str
    next_due: datetime | None = None
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"campaign": self.campaign, "account_id": self.account_id, "status": self.status, "kind": self.kind,
                "state": self.state, "next_due": self.next_due.isoformat() if self.next_due else None,
                "reasons": list(self.reasons)}


def is_conversation(result: CallResult) -> bool:
    """Whether a dial reached a conversation with the debtor: answered, and not a wrong person or a machine."""
    if result.status != "answered":
        return False
    explicit = result.outcome.get("conversation")
    return explicit if isinstance(explicit, bool) else result.outcome.get("kind") not in NOT_CONVERSATION


def callback_time(value: object, zones: tuple[str, ...], pack: RulePack) -> datetime | None:
    """An outcome's `callback_at` (datetime or ISO text) as an aware time; a naive one is read in the debtor's zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(resolve_zones(zones, pack.window)[0]))


def normal_outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    """The dialog's outcome with a promise under `ptp_date`/`ptp_amount` (`promise_date`/`promise_amount` accepted)."""
    out = dict(outcome)
    for old, new in OUTCOME_ALIASES:
        if out.get(new) is None and out.get(old) is not None:
            out[new] = out.pop(old)
    return out


def next_step(policy: RetryPolicy, result: CallResult, *, ended: datetime, dialled: int,
              callback_at: datetime | None) -> Step:
    """After a dial: an answered call is done unless a callback was set; others retry until `max_attempts`.

    A third party's callback time is kept but carries no agreement: the usual hours still apply to it.
    """
    if result.status == "answered":
        kind = result.outcome.get("kind")
        if kind in CALLBACK_KINDS and callback_at is not None and callback_at > ended:
            evidence = (f"callback agreed by the debtor on call {result.call_id or 'unknown'} at {stamp(ended)}"
                        if kind == "callback" else None)
            return Step(state="callback", next_due=callback_at, callback_at=callback_at, callback_evidence=evidence)
        return Step(state="done", next_due=None)
    if dialled >= policy.max_attempts:
        return Step(state="exhausted", next_due=None)
    return Step(state="retry", next_due=ended + policy.retry_after)


def refusal_step(account: Account, decision: Decision) -> Step:
    """After a gate refusal: the account keeps its state and falls due when the gate next allows a dial."""
    if decision.next_allowed is None:
        return Step(state="blocked", next_due=None)
    return Step(state=account.state, next_due=decision.next_allowed, callback_at=account.callback_at,
                callback_evidence=account.callback_evidence)


def one_per_phone(accounts: list[Account]) -> list[Account]:
    """The first due account of each phone number: one number is never rung twice at once."""
    seen: set[str] = set()
    return [a for a in accounts if not (a.phone_hmac in seen or seen.add(a.phone_hmac))]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CampaignRunner:
    """Dials a campaign's due accounts within the pack's rules; `now` and `sleep` are injected (tests use fakes)."""

    def __init__(self, store: CampaignStore, dialer: Dialer, pack: RulePack, audit: AuditLog, *,
                 policy: RetryPolicy | None = None, campaign: str | None = None,
                 now: Callable[[], datetime] = _utc_now, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 concurrency: int = 1, on_attempt: Callable[[AttemptReport], None] | None = None,
                 book: DebtBook | None = None, strategy: Strategy | None = None,
                 idle: timedelta = COLLECT_IDLE) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store, self.dialer, self.pack, self.audit = store, dialer, pack, audit
        self._own_book = book is None
        self.book = book or DebtBook.open(store.target, audit)
        self.pauses = Pauses.open(store.target, audit)
        self.planner = Planner(store, self.book, strategy, TaskBook.open(store.target, audit), pack) \
            if strategy is not None else None
        """With a strategy, accounts are worked until their debts stop (a collection run), not retried by count."""
        self.idle = idle
        self.policy, self.campaign = policy or RetryPolicy(), campaign
        self.now, self.sleep, self.concurrency, self.on_attempt = now, sleep, concurrency, on_attempt

    def close(self) -> None:
        """Close the connections the runner opened itself (the store, and a book it was given, stay open)."""
        self.pauses.close()
        if self.planner is not None:
            self.planner.tasks.close()
        if self._own_book:
            self.book.close()

    async def run(self, *, until: datetime | None = None) -> list[AttemptReport]:
        """Pass over due accounts, sleep until the next one is due, repeat; stop when no account is left active, or
        (a collection run, which keeps waiting for new work) at `until`."""
        interrupted = await asyncio.to_thread(self.store.close_interrupted, self.now())
        if interrupted:
            log.warning("campaign: %d dial(s) left open by an earlier run marked failed", interrupted)
        reports: list[AttemptReport] = []
        while until is None or self.now() < until:
            reports += await self.run_once()
            due = await asyncio.to_thread(self.store.next_due, self.campaign)
            if due is None and self.planner is None:
                return reports
            now = self.now()
            if due is None or due <= now:  # a collection run waiting for work, or what is due is paused
                due = now + self.idle
            elif self.planner is not None:
                due = min(due, now + self.idle)
            wait_s = (due - now).total_seconds()
            if wait_s > 0:
                log.info("campaign: next account due in %.0f s", wait_s)
                await self.sleep(wait_s)
        return reports

    async def run_once(self) -> list[AttemptReport]:
        """One pass: every account due now is gated and, if allowed, dialled (up to `concurrency` at once); a
        collection run plans every account again first."""
        if self.planner is not None:
            await asyncio.to_thread(self.planner.replan, self.now(), self.campaign)
        paused = await asyncio.to_thread(self.pauses.paused)
        due = one_per_phone([a for a in await asyncio.to_thread(self.store.due, self.now(), self.campaign)
                             if not is_paused(paused, a, self.pack.name)])
        limit = asyncio.Semaphore(self.concurrency)

        async def turn(account: Account) -> AttemptReport | None:
            async with limit:
                report = await self.attempt(account)
            if report is not None and self.on_attempt is not None:
                self.on_attempt(report)
            return report

        return [r for r in await asyncio.gather(*(turn(a) for a in due)) if r is not None]

    async def attempt(self, account: Account) -> AttemptReport | None:
        """Claim and gate one account now; record a refusal, or dial it and record the result and the next step
        (None: another dialler on the same database is dialling the debt, or already moved the account on)."""
        at = self.now()
        status = await asyncio.to_thread(self.book.status, account.debt)
        if status.stopped:
            return await self._stopped(account, at, status)
        agreement = account.agreement(self.policy.callback_grace.total_seconds())
        claim = await asyncio.to_thread(self.store.claim, account, at, lambda attempts: pre_dial_check(
            self.pack, at, account.zones, attempts, agreement))
        if claim.decision is None:
            return None
        if claim.attempt_id is None:
            return await self._refused(account, at, claim.decision)
        attempt_id, decision = claim.attempt_id, claim.decision
        dialled = 1 + len(claim.history) - _last_answer(claim.history)
        debt = await asyncio.to_thread(self._debtor_call, account, attempt_id, dialled, agreement, at)
        await self._audit("dial_attempt", account, None, attempt_id=attempt_id, at=stamp(at), attempt=dialled,
                          allowed=True, zones=list(decision.zones), evidence=decision.evidence, stage=account.stage)
        result = await self._dial(debt)
        result = replace(result, outcome=normal_outcome(result.outcome))
        ended = self.now()
        kind = str(result.outcome.get("kind", "answered")) if result.status == "answered" else None
        await asyncio.to_thread(partial(
            self.book.after_call, account.debt, answered=result.status == "answered", kind=kind,
            call_id=result.call_id, at=ended, ptp_date=_date(result.outcome.get("ptp_date")),
            ptp_amount=_amount(result.outcome.get("ptp_amount"))))
        step = next_step(self.policy, result, ended=ended, dialled=dialled,
                         callback_at=callback_time(result.outcome.get("callback_at"), account.zones, self.pack))
        if self.planner is not None:
            await asyncio.to_thread(self.planner.hand_over, account, kind, result.call_id, ended)
            step = await asyncio.to_thread(self.planner.after_dial, account, step)
        conversation = is_conversation(result)
        await asyncio.to_thread(self.store.finish_attempt, attempt_id, account, ended=ended, status=result.status,
                                call_id=result.call_id, outcome=result.outcome, conversation=conversation,
                                detail=result.detail, step=step)
        await self._audit("call_outcome", account, result.call_id, attempt_id=attempt_id, status=result.status,
                          kind=kind, conversation=conversation, ptp_date=_plain(result.outcome.get("ptp_date")),
                          ptp_amount=_plain(result.outcome.get("ptp_amount")), state=step.state,
                          callback_at=step.callback_at.isoformat() if step.callback_at else None,
                          next_due=step.next_due.isoformat() if step.next_due else None,
                          sip_status=result.detail.get("sip_status"))
        log.info("campaign %s account %s: %s%s -> %s", account.campaign, account.account_id, result.status,
                 f" ({kind})" if kind else "", step.state)
        return AttemptReport(campaign=account.campaign, account_id=account.account_id, status=result.status,
                             kind=kind, state=step.state, next_due=step.next_due)

    def _debtor_call(self, account: Account, attempt_id: str, dialled: int, agreement: Agreement | None,
                     at: datetime) -> DebtorCall:
        """The claimed dial's call, personal fields opened only now; if they cannot be, the claim is dropped."""
        try:
            debt = self.store.debtor_call(account, attempt=dialled, agreement=agreement, at=at)
        except Exception:
            self.store.unclaim(attempt_id)
            raise
        return replace(debt, script=self.planner.strategy.stage(debt.days_overdue).script) \
            if self.planner is not None else debt

    async def _refused(self, account: Account, at: datetime, decision: Decision) -> AttemptReport:
        step = refusal_step(account, decision)
        detail = {"reasons": list(decision.reasons), "zones": list(decision.zones),
                  "next_allowed": decision.next_allowed.isoformat() if decision.next_allowed else None}
        attempt_id = await asyncio.to_thread(self.store.record_refusal, account, at, detail, step)
        await self._audit("dial_attempt", account, None, attempt_id=attempt_id, at=stamp(at), allowed=False,
                          **detail)
        log.info("campaign %s account %s: refused by the gate until %s", account.campaign, account.account_id,
                 detail["next_allowed"])
        return AttemptReport(campaign=account.campaign, account_id=account.account_id, status="refused",
                             state=step.state, next_due=step.next_due, reasons=decision.reasons)

    async def _stopped(self, account: Account, at: datetime, status: DebtStatus) -> AttemptReport:
        """A debt that no campaign may dial (disputed, cease, wrong number, paid, closed): refused and left."""
        detail = {"reasons": [status.stopped], "debt_state": status.state}
        step = Step(state="blocked", next_due=None)
        attempt_id = await asyncio.to_thread(self.store.record_refusal, account, at, detail, step)
        await self._audit("dial_attempt", account, None, attempt_id=attempt_id, at=stamp(at), allowed=False, **detail)
        log.info("campaign %s account %s: not dialled, debt %s", account.campaign, account.account_id, status.state)
        return AttemptReport(campaign=account.campaign, account_id=account.account_id, status="refused",
                             state=step.state, next_due=None, reasons=(str(status.stopped),))

    async def _dial(self, debt: DebtorCall) -> CallResult:
        try:
            return await self.dialer.call(debt)
        except Exception as e:  # a dialer fault fails this dial, not the campaign
            log.error("campaign %s account %s: dialer failed (%s)", debt.campaign, debt.account_id, type(e).__name__)
            return CallResult(status="failed", detail={"error": type(e).__name__})

    async def _audit(self, event: str, account: Account, call_id: str | None, /, **data: Any) -> None:
        record = {"campaign": account.campaign, "account_id": account.account_id, **data}
        await asyncio.to_thread(self.audit.append, event, record, call_id=call_id, actor="campaign")


def _last_answer(history: list[tuple[Any, str]]) -> int:
    """The index just after the debt's last answered dial (0 when none was answered)."""
    return max((i + 1 for i, (_, status) in enumerate(history) if status == "answered"), default=0)


def _date(value: object) -> date | None:
    """A promise's date as the dialog gave it (a date or ISO text), or None."""
    if isinstance(value, date) or value is None:
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _amount(value: object) -> Decimal | None:
    """A promise's amount as the dialog gave it, or None."""
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None


def _plain(value: object) -> str | None:
    return None if value is None else str(value)
