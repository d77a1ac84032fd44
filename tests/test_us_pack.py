"""The US pack (FDCPA / Regulation F): each category catches violations and leaves lawful look-alikes alone."""

from __future__ import annotations

from datetime import time

import pytest

from compliance_rules.engine import CallMonitor, CallState, RuleEngine
from compliance_rules.pack import load_pack

PACK = "us-fdcpa-regf"
US_ZONES = {"America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
            "America/Anchorage", "Pacific/Honolulu"}


@pytest.fixture(scope="module")
def us() -> RuleEngine:
    return RuleEngine.from_pack(PACK)


def categories(engine: RuleEngine, text: str, state: CallState | None = None, leg: str = "agent") -> set[str]:
    return {f.category for f in engine.check(leg, text, state or CallState())}


def test_pack_settings() -> None:
    pack = load_pack(PACK)
    assert pack.name == PACK and pack.language == "en"
    assert (pack.window.start, pack.window.end) == (time(8), time(21))
    assert set(pack.window.fallback_zones) == US_ZONES
    assert [(c.calls, c.days) for c in pack.cadence] == [(7, 7)]
    assert pack.quiet_days_after_conversation == 7
    assert all(not rule.homophones for rule in pack.rules)


VIOLATIONS = [
    ("What the fuck is wrong with you, pay your bill", "obscene"),
    ("don't give me that bullshit about your paycheck", "obscene"),
    ("you lying sack of shit", "obscene"),
    ("Stop being a deadbeat and pay what you borrowed", "insult"),
    ("only a loser lets his bills go to collections", "insult"),
    ("You're a pathetic excuse for an adult", "insult"),
    ("We know where you live and what car you drive", "threat"),
    ("Something bad could happen to your family if this isn't paid", "threat"),
    ("keep ignoring me and you'll regret it", "threat"),
    ("If you don't pay today, you'll be arrested", "false_legal_threat"),
    ("There's a warrant out in Cook County", "false_legal_threat"),
    ("We're filing a lawsuit against you today", "false_legal_threat"),
    ("we are taking your house tomorrow morning", "false_legal_threat"),
    ("I'm an attorney and this goes to trial next week", "impersonation"),
    ("This is Officer Daniels with the county police department", "impersonation"),
    ("I'm with Experian and your credit file has been flagged", "impersonation"),
    ("I work for your bank, I'm in their fraud department", "impersonation"),
    ("If this isn't settled I'm calling your employer to let them know", "third_party_disclosure"),
    ("I'll tell your wife exactly how much you owe", "third_party_disclosure"),
    ("maybe your boss would like to know you dont pay your bills", "third_party_disclosure"),
    ("There's a $25 processing fee for paying over the phone", "fee_demand"),
    ("You can send the payment to my personal Venmo", "fee_demand"),
    ("buy two gift cards and read me the numbers", "fee_demand"),
    ("We'll call you every hour until you pay", "harassment"),
    ("I'm going to keep calling until you pick up the phone", "harassment"),
    ("You'll never get rid of us, we call again and again", "harassment"),
]


@pytest.mark.parametrize(("text", "category"), VIOLATIONS)
def test_violation(us: RuleEngine, text: str, category: str) -> None:
    assert category in categories(us, text)


LAWFUL = [
    "This is an attempt to collect a debt and any information obtained will be used for that purpose.",
    "Let me finish it up and read you the confirmation number.",  # 'shit' inside 'finish it'
    "we are getting closer to a resolution here",  # 'loser' inside 'closer'
    "my assistant will email you the payoff letter",
    "Late payments may hurt your credit score.",
    "No one from our office will ever come to your home.",
    "You will not be arrested, this is not a criminal matter.",
    "We may consider legal action as permitted by law.",
    "We may file a lawsuit as permitted by law if the account remains unresolved.",
    "If a court enters a judgment, your wages could be garnished as permitted by law.",
    "the account is with our legal department but no lawsuit has been filed",
    "We are a debt collector calling on behalf of Sunrise Bank.",
    "You can contact the CFPB if you have a complaint.",
    "I'm not a lawyer, but you are welcome to have your attorney call us.",
    "Please remember this is a courtesy call.",
    "We will not contact your employer about this account.",
    "If you'd like, you can talk to your family about a budget before deciding.",
    "There is no fee to pay online through our website.",
    "We do not charge a processing fee for payments by phone.",
    "we will never ask you to pay with a gift card",
    "We will not call you more than seven times in a week.",
    "Our online payment portal is available around the clock.",
]


@pytest.mark.parametrize("text", LAWFUL)
def test_lawful_look_alike(us: RuleEngine, text: str) -> None:
    assert categories(us, text) == set()


DISPUTED = CallState(disputed=True)
UNVERIFIED = CallState(verified=False)
THIRD_PARTY = CallState(verified=False, third_party=True)

STATEFUL = [
    ("The dispute doesn't matter, you still owe this balance", DISPUTED, "pressing_after_dispute"),
    ("I hear you, but how much can you pay today?", DISPUTED, "pressing_after_dispute"),
    ("Disputing it won't stop anything, you need to pay", DISPUTED, "pressing_after_dispute"),
    ("Hi, I'm calling about the balance on your Visa card", UNVERIFIED, "disclosure_before_verification"),
    ("Good morning, you owe 1,850 dollars to Metro Hospital", UNVERIFIED, "disclosure_before_verification"),
    ("Is this the Jane Porter who owes money on a Chase card?", UNVERIFIED, "disclosure_before_verification"),
    ("Tell him he owes us 2,400 dollars and it's past due", THIRD_PARTY, "third_party_disclosure"),
    ("He has an unpaid credit card balance with our client", THIRD_PARTY, "third_party_disclosure"),
]


@pytest.mark.parametrize(("text", "state", "category"), STATEFUL)
def test_state_dependent_violation(us: RuleEngine, text: str, state: CallState, category: str) -> None:
    assert category in categories(us, text, state)
    # the same words are fine to a verified consumer who has not disputed
    assert category not in categories(us, text, CallState())


STATEFUL_LAWFUL = [
    ("Understood, we will pause collection while we look into it.", DISPUTED),
    ("We will send verification of the debt to your address on file.", DISPUTED),
    ("You can send the dispute in writing to PO Box 1200.", DISPUTED),
    ("No payment is required while the dispute is reviewed.", DISPUTED),
    ("Am I speaking with Robert Chen?", UNVERIFIED),
    ("Can you confirm your date of birth for me?", UNVERIFIED),
    ("can you confirm the last four of your social", UNVERIFIED),
    ("Please ask him to call us back at 800 555 0199.", THIRD_PARTY),
    ("It's a personal business matter, could you have her return our call?", THIRD_PARTY),
]


@pytest.mark.parametrize(("text", "state"), STATEFUL_LAWFUL)
def test_state_dependent_lawful(us: RuleEngine, text: str, state: CallState) -> None:
    assert categories(us, text, state) - {"signal"} == set()  # an agent logging the dispute is a signal


SIGNALS = [
    ("This is he.", "verified"),
    ("Speaking.", "verified"),
    ("yes that's me", "verified"),
    ("Wrong number.", "third_party"),
    ("He's not here right now.", "third_party"),
    ("I'm his wife.", "third_party"),
    ("That's not my debt.", "disputed"),
    ("I don't owe you anything", "disputed"),
    ("I dispute this.", "disputed"),
    ("this is identity theft", "disputed"),
    ("I already paid that last year", "disputed"),
]


@pytest.mark.parametrize(("text", "sets"), SIGNALS)
def test_customer_signal_sets_state(us: RuleEngine, text: str, sets: str) -> None:
    flags = us.check("customer", text)
    assert {f.sets for f in flags} == {sets}
    assert all(f.category == "signal" for f in flags)


@pytest.mark.parametrize("text", ["Stop calling me!", "I'll report you to the CFPB", "Talk to my lawyer.",
                                  "please cease contact"])
def test_complaint_signal_alerts(us: RuleEngine, text: str) -> None:
    flags = us.check("customer", text)
    assert flags and all(f.category == "signal" and f.action == "alert" and f.sets is None for f in flags)


@pytest.mark.parametrize("text", ["who am I speaking with", "this is her husband", "he is deceased", "ok thanks"])
def test_customer_not_verified(us: RuleEngine, text: str) -> None:
    assert "verified" not in {f.sets for f in us.check("customer", text)}


def test_agent_rules_ignore_customer_leg(us: RuleEngine) -> None:
    assert us.check("customer", "you will go to jail") == []


def test_monitor_follows_third_party_then_dispute(us: RuleEngine) -> None:
    monitor = CallMonitor(us)
    assert monitor.check("customer", "He's not here, I'm his wife.", final=True)
    assert monitor.state.third_party and not monitor.state.verified
    flags = monitor.check("agent", "He owes us 900 dollars.", final=True)
    assert {f.category for f in flags} == {"third_party_disclosure"}

    monitor = CallMonitor(us)
    monitor.check("customer", "Yes, this is she.", final=True)
    monitor.check("customer", "That's not my debt, I never opened that card.", final=True)
    assert monitor.state.verified and monitor.state.disputed
    assert {f.category for f in monitor.check("agent", "Whatever, when can you pay?", final=True)} == \
        {"pressing_after_dispute"}
    logged = monitor.check("agent", "We will pause collection and mail you verification.", final=True)
    assert {(f.category, f.sets) for f in logged} == {("signal", "disputed")}
