"""Model flags under a pack: the semantic model's strongest category for an agent's utterance, with the pack's
action above the calibrated threshold and an alert to the supervisor below it."""

from __future__ import annotations

from collections.abc import Sequence

from compliance_rules.engine import CallState, Flag
from compliance_rules.pack import RulePack
from compliance_rules.semantic import SemanticModel

MODEL_RULE_PREFIX = "model."
MAX_MATCHED_CHARS = 120


def context_of(state: CallState) -> str:
    """The head's context for a call state: a third party outranks a dispute, which outranks no verification."""
    if state.third_party:
        return "third_party"
    if state.disputed:
        return "disputed"
    return "" if state.verified else "unverified"


class SemanticDetector:
    """Flags what the model reads as a violation in an agent's utterance, as the pack's `model:` section says."""

    def __init__(self, model: SemanticModel, pack: RulePack) -> None:
        self.model, self.pack = model, pack
        self.version = model.version
        self.severities = pack.model_categories
        """Model category → severity in this pack; categories the pack leaves out are not flagged."""

    def check(self, leg: str, text: str, state: CallState | None = None) -> list[Flag]:
        """At most one model flag for `text` on `leg` (agents only) in `state`."""
        return self.check_many(leg, [text], [state or CallState()])[0]

    def check_many(self, leg: str, texts: Sequence[str], states: Sequence[CallState]) -> list[list[Flag]]:
        """`check` for many utterances in one pass of the encoder."""
        if leg != "agent" or not self.severities or not texts:
            return [[] for _ in texts]
        all_scores = self.model.scores(texts, [context_of(s) for s in states])
        return [self._flags(leg, text, scores) for text, scores in zip(texts, all_scores, strict=True)]

    def _flags(self, leg: str, text: str, scores: dict[str, float]) -> list[Flag]:
        candidates = [(p, c) for c, p in scores.items() if c in self.severities]
        if not text.strip() or not candidates:
            return []
        score, category = max(candidates)
        threshold = self.model.head.thresholds.get(category)
        if threshold is None or score < threshold.alert:
            return []
        severity = self.severities[category]
        action = self.pack.actions[severity] if score >= threshold.act else "alert"
        return [Flag(rule=MODEL_RULE_PREFIX + category, category=category, severity=severity, action=action, leg=leg,
                     span=(0, len(text)), matched=text[:MAX_MATCHED_CHARS], source="model", score=round(score, 4),
                     model=self.version)]
