"""What a campaign dials through: the Dialer interface, what it is told about a debtor, and the SIP dialer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, Protocol

from baresip import CallBusy, CallDeclined, CallFailed, CallTimeout

from compliance_rules.timing import Agreement
from voicebot.adapters.sip import SipAdapter, SipCallError
from voicebot.bot import BotCall, BotSetupError, outcome_data
from voicebot.call import Call
from voicebot.campaigns.importer import Stage
from voicebot.config import Config

log = logging.getLogger(__name__)

Status = Literal["answered", "no_answer", "busy", "failed", "refused"]
STATUSES: tuple[Status, ...] = ("answered", "no_answer", "busy", "failed", "refused")
NO_ANSWER_SIP = frozenset({408, 480, 487, 603})
"""No answer in time, temporarily unavailable, cancelled while ringing, declined by the callee: try again later."""
BUSY_SIP = frozenset({486, 600})
HOLD_S = 3.0
MAX_CALL_S = 900.0
END_WAIT_S = 15.0
_PREFIX = re.compile(r"\+?\d{1,15}")


class DialPlanError(ValueError):
    """A --sip-proxy entry that is not a SIP URI, `host[:port]`, or `+PREFIX=` one of those."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DebtorCall:
    """What the bot needs to make one reminder call; personal fields are left out of its repr (and so of logs)."""

    campaign: str
    account_id: str
    name: str = field(repr=False)
    phone: str = field(repr=False)
    zones: tuple[str, ...]
    """The debtor's zones as imported (an unknown or empty one means every zone of the pack)."""
    amount: Decimal
    days_overdue: int
    stage: Stage
    lender: str
    id_last4: str | None = field(default=None, repr=False)
    due_date: date | None = None
    agent_id: str | None = None
    attempt: int = 1
    """This dial's number among the account's dials since its last answered call."""
    agreement: Agreement | None = None
    """The agreed callback this call keeps, if any: the call clock may run to its end."""
    language: str = ""
    """The script language the bot speaks (empty: the campaign pack's)."""
    script: str | None = None
    """The bundled script a collection strategy chose for the debt's stage (None: the bot picks by days overdue)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """How a dial ended: `status`, the dialog's `outcome` when answered, the supervised call's id."""

    status: Status
    outcome: dict[str, Any] = field(default_factory=dict)
    """`kind` (promise_to_pay, dispute, wrong_person, callback, refusal, hardship, already_paid, complaint, answered,
    ...), and where they apply `ptp_date` (ISO date), `ptp_amount`, `callback_at` (ISO time with offset)."""
    call_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """Why a dial failed (`sip_status`, `error` type name); never personal data."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"call status must be one of {', '.join(STATUSES)}, not {self.status!r}")


class Dialer(Protocol):
    """Places one reminder call and reports how it went."""

    async def call(self, debt: DebtorCall) -> CallResult:
        """Dial the debtor, run the dialog if answered, hang up; return the result (never raise for a failed dial)."""
        ...


Converse = Callable[[Call, DebtorCall], Awaitable[dict[str, Any]]]
"""The bot's dialog on an answered, supervised call: returns the outcome dict; the dialer hangs up afterwards."""


async def hold_then_hang_up(call: Call, debt: DebtorCall, hold_s: float = HOLD_S) -> dict[str, Any]:
    """The default dialog: stay on the line a few seconds (or until the callee hangs up), then end."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(call.wait(), hold_s)
    return {"kind": "answered"}


def bot_params(debt: DebtorCall) -> dict[str, str]:
    """The bot's account parameters for a debtor; BotSetupError when the row lacks what the bot must verify."""
    if debt.id_last4 is None or debt.due_date is None:
        raise BotSetupError("the account lacks id_last4 or due_date, which the bot needs; re-import it with both")
    return {"name": debt.name, "id_last4": debt.id_last4, "amount": str(debt.amount),
            "due_date": debt.due_date.isoformat(), "lender": debt.lender, "days_overdue": str(debt.days_overdue),
            **({"language": debt.language} if debt.language else {}),
            **({"script": debt.script} if debt.script else {})}


async def bot_outcome(bot: BotCall) -> dict[str, Any]:
    """The bot's dialog on an answered call: wait until the call is over; its outcome is the campaign's."""
    await bot.call.wait()
    return outcome_data(bot.dialog)


@dataclass(frozen=True, slots=True)
class DialPlan:
    """Which SIP URI a phone number is dialled at: the longest matching `+prefix` entry, else the default."""

    default: str | None
    routes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> DialPlan:
        """Entries are `URI` (the default) or `+PREFIX=URI`; a URI is `sip:{phone}@host[:port]` or `host[:port]`."""
        default, routes = None, []
        for entry in entries:
            prefix, sep, target = entry.partition("=")
            if sep and _PREFIX.fullmatch(prefix.strip()):
                routes.append((prefix.strip().lstrip("+"), _template(target)))
            elif default is None:
                default = _template(entry)
            else:
                raise DialPlanError(f"two default SIP targets given ({entry!r}); give others as +PREFIX=URI")
        if default is None and not routes:
            raise DialPlanError("no SIP target: give --sip-proxy sip:{phone}@pbx.example:5060")
        return cls(default, tuple(sorted(routes, key=lambda r: -len(r[0]))))

    def uri(self, phone: str) -> str:
        """The URI to dial `phone` (E.164) at; DialPlanError when no entry covers it."""
        digits = phone.lstrip("+")
        template = next((t for prefix, t in self.routes if digits.startswith(prefix)), self.default)
        if template is None:
            raise DialPlanError("no SIP route covers this number; add a default --sip-proxy")
        return template.replace("{phone}", phone)


def _template(target: str) -> str:
    target = target.strip()
    if "{phone}" not in target:
        host = target.split(":", 1)[1] if target.lower().startswith("sip:") else target
        if not host or "@" in host:
            raise DialPlanError(f"SIP target {target!r} must be sip:{{phone}}@host[:port] or host[:port]")
        target = f"sip:{{phone}}@{host}"
    probe = target.replace("{phone}", "+10000000")
    if not probe.lower().startswith("sip:") or "{" in probe or any(c in probe for c in " \r\n<>\""):
        raise DialPlanError(f"SIP target {target!r} must look like sip:{{phone}}@pbx.example:5060")
    return target


def sip_failure_status(error: BaseException | None) -> tuple[Status, int | None]:
    """The campaign status of a dial that was not answered, from the SIP stack's error, and the SIP status."""
    if isinstance(error, CallBusy):
        return "busy", error.status
    if isinstance(error, CallTimeout | CallDeclined):
        return "no_answer", error.status
    if isinstance(error, CallFailed):
        if error.status in BUSY_SIP:
            return "busy", error.status
        return ("no_answer" if error.status in NO_ANSWER_SIP else "failed"), error.status
    return "failed", None


class SipDialer:
    """Dials through the SIP adapter: the answered call is supervised like any other and handed to the dialog.

    With `bot` (the project's Config), the bot makes the call and its dialog's outcome is the result; else `converse`.
    """

    def __init__(self, adapter: SipAdapter, plan: DialPlan, *, converse: Converse = hold_then_hang_up,
                 max_call_s: float = MAX_CALL_S, bot: Config | None = None) -> None:
        self.adapter, self.plan, self.converse, self.max_call_s = adapter, plan, converse, max_call_s
        self.bot = bot

    async def call(self, debt: DebtorCall) -> CallResult:
        """Dial, converse, hang up; SIP failures become busy, no_answer or failed."""
        try:
            uri = self.plan.uri(debt.phone)
        except DialPlanError:
            return CallResult(status="failed", detail={"error": "no_route"})
        try:
            if self.bot is not None:
                return await self._bot_call(uri, debt, self.bot)
            call = await self.adapter.dial(uri, zones=debt.zones, agent_id=debt.agent_id)
        except BotSetupError as e:
            log.warning("campaign %s account %s: no bot call (%s)", debt.campaign, debt.account_id, e)
            return CallResult(status="failed", detail={"error": type(e).__name__})
        except SipCallError as e:
            status, sip_status = sip_failure_status(e.__cause__)
            cause = type(e.__cause__ or e).__name__
            log.info("campaign %s account %s: dial %s (%s)", debt.campaign, debt.account_id, status, cause)
            return CallResult(status=status, detail={"sip_status": sip_status, "error": cause})
        outcome = await self._converse(call, debt)
        return CallResult(status="answered", outcome=outcome, call_id=call.call_id)

    async def _bot_call(self, uri: str, debt: DebtorCall, config: Config) -> CallResult:
        """The bot dials the debtor and holds the dialog; its outcome is the call's."""
        bot = await self.adapter.dial_bot(uri, config, bot_params(debt), zones=debt.zones, agent_id=debt.agent_id,
                                          account_id=debt.account_id)
        outcome = await self._converse(bot.call, debt, lambda _call, _debt: bot_outcome(bot))
        return CallResult(status="answered", outcome=outcome, call_id=bot.call.call_id)

    async def _converse(self, call: Call, debt: DebtorCall, converse: Converse | None = None) -> dict[str, Any]:
        """Run the dialog within the maximum call length, then make sure the call is over."""
        try:
            outcome = await asyncio.wait_for((converse or self.converse)(call, debt), self.max_call_s)
        except TimeoutError:
            outcome = {"kind": "max_length"}
        except Exception as e:  # a dialog bug must not leave the line open or stop the campaign
            log.error("campaign %s account %s: dialog failed (%s)", debt.campaign, debt.account_id, type(e).__name__)
            outcome = {"kind": "error", "error": type(e).__name__}
        if call.ended_reason is None:
            call.act("hangup", actor="bot", reason="the bot's call is complete")
        try:
            await asyncio.wait_for(call.wait(), END_WAIT_S)
        except TimeoutError:
            log.error("campaign call %s: did not end %.0f s after the hang-up", call.call_id, END_WAIT_S)
        return dict(outcome) if isinstance(outcome, dict) else {"kind": "error", "error": "outcome not a dict"}
