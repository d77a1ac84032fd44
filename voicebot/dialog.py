"""The reminder bot's dialog: a script and an account in, customer replies heard, lines to say and an outcome out."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from compliance_rules.engine import CallState
from compliance_rules.pack import RulePack
from compliance_rules.timing import in_window, next_open, resolve_zones
from scripts_library import LINES, Script, ScriptFillError, to_amount
from voicebot.dialog_data import Account, AccountError, BotLine, Caller, DialogError, Outcome, OutcomeKind
from voicebot.nlu import Slots, Understanding
from voicebot.replies import affirmative, callback_at, parse_clock, parse_digits, wrong_number

MAX_CALL_S = 300
MAX_TURNS = 30
"""A second bound besides the call length: replies, silences and key presses together."""
UNSURE = 0.4
"""Below this confidence an intent is not acted on: the reply counts as not understood."""
PROMISE_HORIZON = timedelta(days=366)

NAME, DIGITS, PAYMENT, CAPTURE, PLAN = "name", "digits", "payment", "capture", "plan"
CALLBACK_TIME, PROPOSAL, THIRD_PARTY, TRANSFER_OFFER, DONE = "callback_time", "proposal", "third_party", "offer", "done"


class Dialog:
    """One scripted reminder call: `start()`, then `hear()`, `digits()`, `silence()` and `tick()` until `done`."""

    def __init__(self, script: Script, account: Account, *, caller: Caller, now: Callable[[], datetime],
                 pack: RulePack | None = None, max_call_s: float = MAX_CALL_S, transfer_available: bool = True) -> None:
        if not script.covers(account.days_overdue):
            raise AccountError(f"script {script.id} is not for an account this many days overdue")
        self.script, self.account, self.max_call_s = script, account, max_call_s
        self.transfer_available = transfer_available
        self.pack = pack or script.engine.pack
        self.zones = resolve_zones(account.zones, self.pack.window)
        self._now = now
        self._id_last4 = parse_digits(account.id_last4, "en") or ""
        if self._id_last4 != account.id_last4.strip().upper():
            raise AccountError("id_last4 must be four digits, the last may be X")
        self._values = {"name": account.name, "lender": account.lender, "company": caller.company,
                        "agent_id": caller.agent_id, "amount": account.amount, "due_date": account.due_date}
        self._state = CallState(verified=False)
        self._step, self._question = "", ("ask_name", {})
        self._started: datetime | None = None
        self._outcome: Outcome | None = None
        self._used: set[str] = set()
        self._misses = self._silences = self._turns = 0
        self._capture_kind, self._pending = "", Slots()
        self._proposed: datetime | None = None
        self._dry_run()

    @property
    def done(self) -> bool:
        """Whether the call has ended (or been handed to a human)."""
        return self._outcome is not None

    @property
    def outcome(self) -> Outcome | None:
        """How the call ended; None while it goes on."""
        return self._outcome

    @property
    def state(self) -> CallState:
        """What the call has established so far, for the live rule engine."""
        return replace(self._state)

    def start(self) -> list[BotLine]:
        """The opening: who is calling, for whom, that the call is recorded; then ask for the debtor by name."""
        if self._started is not None:
            raise DialogError("start() was already called for this dialog")
        self._started = self._clock()
        return [self._line("opening"), *self._ask("ask_name", NAME)]

    def hear(self, heard: Understanding) -> list[BotLine]:
        """The bot's reply to one understood customer utterance; an intent the model is unsure of counts as other."""
        if heard.confidence < UNSURE:
            heard = replace(heard, intent="other")
        return self._turn(lambda: self._on_reply(heard))

    def digits(self, keys: str) -> list[BotLine]:
        """Key presses (DTMF) or digits read out elsewhere; only used while asking for the ID digits."""
        return self._turn(lambda: self._check_digits(keys) if self._step == DIGITS else [])

    def silence(self) -> list[BotLine]:
        """The customer said nothing for a turn: prompt once, end on the second silence in a row."""
        return self._turn(self._on_silence)

    def tick(self) -> list[BotLine]:
        """A polite goodbye once the call reaches its maximum length; otherwise nothing."""
        if self._started is None or self.done or not self._over_time():
            return []
        return self._end("max_length", [self._line("max_length_goodbye")])

    def hang_up(self) -> None:
        """The customer hung up; what was captured so far is kept."""
        if not self.done:
            self._outcome = Outcome(kind="hung_up", promise_date=self._pending.date,
                                    promise_amount=self._pending.amount)
            self._step = DONE

    # ---- turns ----------------------------------------------------------------------------------------------

    def _turn(self, act: Callable[[], list[BotLine]]) -> list[BotLine]:
        if self._started is None:
            raise DialogError("call start() before the customer's turns")
        if self.done:
            return []
        self._turns += 1
        if self._over_time() or self._turns > MAX_TURNS:
            return self._end("max_length", [self._line("max_length_goodbye")])
        return act()

    def _on_reply(self, heard: Understanding) -> list[BotLine]:
        self._silences = 0
        if heard.intent == "dispute":
            self._state.disputed = True
            return self._end("dispute", [self._line("dispute_logged"), self._line("goodbye")])
        if heard.intent == "already_paid":
            self._state.disputed = True
            return self._end("already_paid", [self._line("already_paid_ack"), self._line("goodbye")])
        handler = {NAME: self._on_name, DIGITS: self._on_digits, PAYMENT: self._on_payment, CAPTURE: self._on_capture,
                   PLAN: self._on_plan, CALLBACK_TIME: self._on_callback_time, PROPOSAL: self._on_proposal,
                   THIRD_PARTY: self._on_third_party, TRANSFER_OFFER: self._on_transfer_offer}[self._step]
        return handler(heard)

    def _common(self, heard: Understanding) -> list[BotLine] | None:
        """Replies handled the same way at most steps: complaint, wrong person or third party, callback."""
        if heard.intent == "complaint":
            ack = self._line("complaint_ack")
            if self.transfer_available:
                return [ack, *self._ask("offer_transfer", TRANSFER_OFFER)]
            return self._end("complaint", [ack, self._line("goodbye")])
        if heard.intent == "wrong_person":
            self._state.third_party, self._state.verified = True, False
            if wrong_number(heard.text):
                return self._end("wrong_person", [self._line("wrong_person_sorry"), self._line("goodbye")])
            return self._ask("third_party_callback", THIRD_PARTY)
        if heard.intent == "callback":
            if self._has_time(heard):
                return self._schedule(heard)
            if self._once("ask_callback_time"):
                return self._ask("ask_callback_time", CALLBACK_TIME)
            return self._no_callback_time()
        return None

    def _on_name(self, heard: Understanding) -> list[BotLine]:
        """A bare "yes" to "is that you?" confirms too (the digits still verify)."""
        if heard.intent == "identity_confirmed" or (heard.intent == "other"
                                                     and affirmative(heard, self.script.language)):
            return self._ask("ask_id_digits", DIGITS)
        if heard.intent == "refusal":
            return self._refused_verification()
        return self._common(heard) or self._not_understood()

    def _on_digits(self, heard: Understanding) -> list[BotLine]:
        if parse_digits(heard.text, self.script.language):
            return self._check_digits(heard.text)
        if heard.intent == "refusal":
            return self._refused_verification()
        return self._common(heard) or self._not_understood()

    def _check_digits(self, said: str) -> list[BotLine]:
        self._silences = 0
        found = parse_digits(said, self.script.language)
        if found is None:
            return self._not_understood()
        if hmac.compare_digest(found.encode(), self._id_last4.encode()):
            self._state.verified, self._state.third_party = True, False
            return [self._line("verified_disclosure"), *self._ask("ask_payment", PAYMENT)]
        if self._once("id_retry"):
            return self._ask("id_retry", DIGITS)
        return self._end("not_verified", [self._line("verify_failed"), self._line("goodbye")],
                         notes=("id digits did not match",))

    def _refused_verification(self) -> list[BotLine]:
        if self._once("verify_why"):
            return [self._line("verify_why"), *self._ask(self._question[0], self._step)]
        return self._end("refused", [self._line("verify_failed"), self._line("goodbye")],
                         notes=("identity not verified",))

    def _on_payment(self, heard: Understanding) -> list[BotLine]:
        slots = heard.slots
        if heard.intent == "promise_to_pay" or (heard.intent in ("other", "identity_confirmed")
                                                and (slots.date or slots.amount)):
            return self._capture("promise", slots)
        if heard.intent == "hardship":
            return self._ask("offer_plan", PLAN)
        if heard.intent == "refusal":
            if self._once("restate"):
                return self._ask("restate", PAYMENT)
            return self._end("refused", [self._line("goodbye")])
        return self._common(heard) or self._not_understood()

    # ---- promises and instalment plans -------------------------------------------------------------------

    def _capture(self, kind: str, slots: Slots) -> list[BotLine]:
        self._capture_kind, self._pending = kind, Slots()
        return self._absorb(slots)

    def _absorb(self, slots: Slots) -> list[BotLine]:
        """Keep the valid date and amount of a reply, then ask once for what is missing, or confirm."""
        self._pending = Slots(date=self._pending.date or self._valid_date(slots.date),
                              amount=self._pending.amount or _valid_amount(slots.amount))
        if self._pending.date is None and self._once("ask_date"):
            return self._ask("ask_date", CAPTURE)
        if self._pending.amount is None and self._once("ask_amount"):
            return self._ask("ask_amount", CAPTURE)
        return self._confirm_capture()

    def _on_capture(self, heard: Understanding) -> list[BotLine]:
        if heard.intent in ("complaint", "wrong_person", "callback"):
            return self._common(heard) or []
        return self._confirm_capture() if heard.intent == "refusal" else self._absorb(heard.slots)

    def _confirm_capture(self) -> list[BotLine]:
        day, amount, notes = self._pending.date, self._pending.amount, []
        if self._capture_kind == "plan":
            if day and amount:
                return self._end("hardship_plan", [self._line("confirm_plan", date=day, amount=amount),
                                                   self._line("goodbye")], promise_date=day, promise_amount=amount)
            return self._end("hardship_plan", [self._line("plan_followup"), self._line("goodbye")],
                             promise_date=day, promise_amount=amount, notes=("plan terms incomplete",))
        if amount is None:
            amount, notes = self.account.amount, ["amount not given: the full balance assumed"]
        if day is None:
            return self._end("promise_to_pay", [self._line("promise_noted"), self._line("goodbye")],
                             promise_amount=amount, notes=(*notes, "no date given"))
        return self._end("promise_to_pay", [self._line("confirm_promise", date=day, amount=amount),
                                            self._line("goodbye")],
                         promise_date=day, promise_amount=amount, notes=tuple(notes))

    def _on_plan(self, heard: Understanding) -> list[BotLine]:
        if heard.intent == "promise_to_pay" or heard.slots.date or heard.slots.amount:
            return self._capture("plan", heard.slots)
        if heard.intent == "refusal":
            return self._end("hardship_plan", [self._line("goodbye")], notes=("plan declined",))
        if (lines := self._common(heard)) is not None:
            return lines
        if self.transfer_available:
            return self._end("hardship_plan", [self._line("transfer", transfer=True)], transferred=True)
        return self._end("hardship_plan", [self._line("plan_followup"), self._line("goodbye")])

    # ---- callbacks, third parties, complaints ---------------------------------------------------------------

    def _has_time(self, heard: Understanding) -> bool:
        return heard.slots.date is not None or parse_clock(heard.text, self.script.language) is not None

    def _schedule(self, heard: Understanding) -> list[BotLine]:
        """A callback inside the permitted hours in every debtor zone; outside them, propose the next open time."""
        zone = ZoneInfo(self.zones[0])
        when = callback_at(self._clock(), zone, heard.slots.date, parse_clock(heard.text, self.script.language))
        if in_window(self.pack.window, when, self.zones):
            return self._confirm_callback(when)
        proposal = next_open(self.pack.window, when, self.zones)
        if proposal is None:
            return self._no_callback_time()
        if self._once("proposal"):
            self._proposed = proposal
            return self._ask("callback_outside_hours", PROPOSAL, callback_time=proposal.astimezone(zone))
        return self._confirm_callback(proposal)

    def _confirm_callback(self, when: datetime) -> list[BotLine]:
        local = when.astimezone(ZoneInfo(self.zones[0]))
        return self._end(self._callback_kind(), [self._line("callback_confirm", callback_time=local),
                                                 self._line("goodbye")], callback_at=local)

    def _callback_kind(self) -> OutcomeKind:
        return "third_party_callback" if self._state.third_party else "callback"

    def _no_callback_time(self, note: str = "no callback time given") -> list[BotLine]:
        return self._end(self._callback_kind(), [self._line("goodbye")], notes=(note,))

    def _on_callback_time(self, heard: Understanding) -> list[BotLine]:
        if self._has_time(heard):
            return self._schedule(heard)
        return self._common(heard) if heard.intent in ("complaint", "wrong_person") else self._no_callback_time()

    def _on_proposal(self, heard: Understanding) -> list[BotLine]:
        if self._has_time(heard):
            return self._schedule(heard)
        if heard.intent in ("complaint", "wrong_person"):
            return self._common(heard) or []
        if self._proposed is None or not affirmative(heard, self.script.language):
            return self._no_callback_time("proposed time declined")
        return self._confirm_callback(self._proposed)

    def _on_third_party(self, heard: Understanding) -> list[BotLine]:
        if heard.intent == "identity_confirmed":  # the debtor came to the phone: verify from the start of digits
            self._state.third_party = False
            return self._ask("ask_id_digits", DIGITS)
        if self._has_time(heard):
            return self._schedule(heard)
        if heard.intent == "complaint":
            return self._common(heard) or []
        kind: OutcomeKind = "wrong_person" if wrong_number(heard.text) else "third_party_callback"
        return self._end(kind, [self._line("wrong_person_sorry"), self._line("goodbye")],
                         notes=("no callback time given",))

    def _on_transfer_offer(self, heard: Understanding) -> list[BotLine]:
        if heard.intent == "complaint" or affirmative(heard, self.script.language):
            return self._end("complaint", [self._line("transfer", transfer=True)], transferred=True)
        return self._end("complaint", [self._line("goodbye")])

    # ---- not understood, silence, ending ---------------------------------------------------------------------

    def _not_understood(self) -> list[BotLine]:
        self._misses += 1
        if self._misses < 2:
            return [self._line("not_understood"), self._repeat()]
        if self.transfer_available:
            return self._end("transferred", [self._line("transfer", transfer=True)], transferred=True,
                             notes=("not understood",))
        return self._end("no_understanding", [self._line("goodbye")])

    def _on_silence(self) -> list[BotLine]:
        if self._step == CAPTURE:
            return self._confirm_capture()
        self._silences += 1
        if self._silences < 2:
            return [self._line("silence_prompt"), self._repeat()]
        if self._step == TRANSFER_OFFER:
            return self._end("complaint", [self._line("goodbye")])
        if self._step in (CALLBACK_TIME, PROPOSAL, THIRD_PARTY):
            return self._no_callback_time()
        if self._step == PLAN:
            return self._end("hardship_plan", [self._line("plan_followup"), self._line("goodbye")])
        return self._end("silence", [self._line("goodbye")])

    def _ask(self, line_id: str, step: str, **values: object) -> list[BotLine]:
        self._step, self._question, self._misses = step, (line_id, values), 0
        return [self._line(line_id, **values)]

    def _repeat(self) -> BotLine:
        line_id, values = self._question
        return self._line(line_id, **values)

    def _once(self, move: str) -> bool:
        """True the first time a move is asked for in this call, False after."""
        first = move not in self._used
        self._used.add(move)
        return first

    def _end(self, kind: OutcomeKind, lines: list[BotLine], **outcome: object) -> list[BotLine]:
        if lines and not lines[-1].transfer:
            lines[-1] = replace(lines[-1], end_call=True)
        self._outcome = Outcome(kind=kind, **outcome)  # type: ignore[arg-type]
        self._step = DONE
        return lines

    def _line(self, line_id: str, *, transfer: bool = False, **values: object) -> BotLine:
        return BotLine(line_id, self.script.fill(line_id, self._values | values), transfer=transfer)

    def _clock(self) -> datetime:
        now = self._now()
        if now.tzinfo is None:
            raise DialogError("the dialog's clock must give timezone-aware times")
        return now

    def _over_time(self) -> bool:
        return self._started is not None and (self._clock() - self._started).total_seconds() >= self.max_call_s

    def _valid_date(self, day: date | None) -> date | None:
        today = self._clock().astimezone(ZoneInfo(self.zones[0])).date()
        return day if day is not None and today <= day <= today + PROMISE_HORIZON else None

    def _dry_run(self) -> None:
        """Fill every line with this account's values before dialling: a bad account fails here, not mid-call."""
        now = self._clock()
        local_morning = now.astimezone(ZoneInfo(self.zones[0])).replace(hour=10, minute=0)  # a callback in hours
        extra = {"date": now.date(), "callback_time": local_morning}
        for line_id in LINES:
            try:
                self.script.fill(line_id, self._values | extra)
            except ScriptFillError as e:
                raise AccountError(f"account cannot be called with script {self.script.id}: {e}") from e


def _valid_amount(amount: Decimal | None) -> Decimal | None:
    try:
        return to_amount(amount) if amount is not None else None
    except ScriptFillError:
        return None
