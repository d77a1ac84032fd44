"""Model flags under a pack: the semantic model's strongest category for an agent's utterance, with the pack's
action above the calibrated threshold and an alert to the supervisor below it."""

from __future__ import annotations

from collections.abc import Sequence

from compliance_rules.engine import CallState, Flag
from compliance_rules.pack import RulePack
from compliance_rules.replies import ReplyHead, bundled_replies
from compliance_rules.semantic import SemanticModel, SemanticModelError, bundled_model

MODEL_RULE_PREFIX = "model."
OVERRULE_NEVER = 2.0
"""The veto of a language the model has none for: no score reaches it."""


def contexts_of(state: CallState) -> tuple[str, ...]:
    """The head's contexts that hold in a call state, or ("",); with a third party on the line, a disclosure is
    one to the third party, not one before verification."""
    held = (("third_party", state.third_party), ("disputed", state.disputed),
            ("unverified", not state.verified and not state.third_party))
    return tuple(context for context, holds in held if holds) or ("",)


class SemanticDetector:
    """Flags what the model reads as a violation in an agent's utterance, as the pack's `model:` section says, and
    the call state a customer's reply sets (a `signal`, as the pack's signal rules give).

    A model flag spans the whole utterance and quotes none of it (`matched` is empty): audit records and events
    carry no transcript for it."""

    def __init__(self, model: SemanticModel, pack: RulePack, replies: ReplyHead | None = None) -> None:
        if pack.language not in model.head.thresholds:
            raise SemanticModelError(f"the semantic model {model.version} has no thresholds for language "
                                     f"{pack.language!r} (pack {pack.name}); calibrate it on blind data first")
        self.model, self.pack, self.replies = model, pack, replies
        self.thresholds = model.head.thresholds[pack.language]
        self.veto = model.head.vetoes.get(pack.language, OVERRULE_NEVER)
        """The model's `ok` score at or above which it overrules a rule's flag on an agent's line."""
        self.version = model.version
        self.severities = pack.model_categories
        """Model category → severity in this pack; categories the pack leaves out are not flagged."""

    @classmethod
    def for_pack(cls, pack: RulePack) -> SemanticDetector:
        """The bundled model and reply head under `pack`."""
        return cls(bundled_model(), pack, bundled_replies())

    def check(self, leg: str, text: str, state: CallState | None = None, previous: str = "") -> list[Flag]:
        """At most one model flag for `text` on `leg` in `state`: a violation by an agent, or the state a customer's
        reply to the agent's `previous` line sets when the call is not in it yet."""
        if leg == "customer":
            return self._signal(text, previous, state or CallState())
        return self.check_many(leg, [text], [state or CallState()])[0]

    def confirm(self, leg: str, text: str, state: CallState, flags: Sequence[Flag]) -> list[Flag]:
        """The rule flags that stand: on an agent's line, none when the model reads it as lawful with a score of at
        least the language's veto in every context the state holds (a negation or a fraud warning that holds a
        listed phrase); signals, and the customer's leg, always."""
        if leg != "agent" or not text.strip():
            return list(flags)
        contexts = contexts_of(state)
        lawful = min(s["ok"] for s in self.model.scores([text] * len(contexts), list(contexts)))
        return list(flags) if lawful < self.veto else [f for f in flags if f.category == "signal"]

    def _signal(self, text: str, previous: str, state: CallState) -> list[Flag]:
        if self.replies is None or not text.strip():
            return []
        vectors = self.model.encoder.embed([text, previous])
        (found,) = self.replies.states(vectors[:1], vectors[1:])
        if found is None or getattr(state, found[0]):
            return []
        sets, score = found
        return [Flag(rule=f"{MODEL_RULE_PREFIX}signal.{sets}", category="signal", severity="info",
                     action=self.pack.actions["info"], leg="customer", span=(0, len(text)), matched="", sets=sets,
                     source="model", score=score, model=self.replies.version)]

    def check_many(self, leg: str, texts: Sequence[str], states: Sequence[CallState]) -> list[list[Flag]]:
        """`check` for many utterances in one pass of the encoder; where several contexts hold in a state, each
        category takes its highest score among them."""
        if leg != "agent" or not self.severities or not texts:
            return [[] for _ in texts]
        pairs = [(i, context) for i, state in enumerate(states) for context in contexts_of(state)]
        scored = self.model.scores([texts[i] for i, _ in pairs], [context for _, context in pairs])
        best: list[dict[str, float]] = [{} for _ in texts]
        for (i, _), scores in zip(pairs, scored, strict=True):
            best[i] = {c: max(p, best[i].get(c, 0.0)) for c, p in scores.items()}
        return [self._flags(leg, text, scores) for text, scores in zip(texts, best, strict=True)]

    def _flags(self, leg: str, text: str, scores: dict[str, float]) -> list[Flag]:
        candidates = [(p, c) for c, p in scores.items() if c in self.severities]
        if not text.strip() or not candidates:
            return []
        score, category = max(candidates)
        threshold = self.thresholds.get(category)
        if threshold is None or score < threshold.alert:
            return []
        severity = self.severities[category]
        action = self.pack.actions[severity] if score >= threshold.act else "alert"
        return [Flag(rule=MODEL_RULE_PREFIX + category, category=category, severity=severity, action=action, leg=leg,
                     span=(0, len(text)), matched="", source="model", score=round(score, 4),
                     model=self.version)]
