"""Eligibility: which actions this customer may get here and now, from the catalogue and the rules' directives.

Order of precedence, strongest first:
  exclude (engagement policy: not eligible, not applicable, not suitable) removes an action, even a required one;
  require makes an action mandatory: ranked first and immune to contact policy;
  suppress (contact policy) removes a non-mandatory action;
  boost multiplies an action's priority.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from decision.catalogue import Action, Catalogue
from decision.domain import RuleFired, Suppression, Touchpoint
from rules.engine import RulesEngine

DEFAULT_LANGUAGE = "en"


@dataclass
class Eligible:
    """The outcome of eligibility for one decision."""

    actions: list[Action]
    mandatory: set[str] = field(default_factory=set)
    boosts: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    suppressed: list[Suppression] = field(default_factory=list)
    rules_fired: list[RuleFired] = field(default_factory=list)
    language: str = DEFAULT_LANGUAGE
    # (follow-up kind, action id): emitted only if that action is decided.
    follow_ups: list[tuple[str, str]] = field(default_factory=list)


def rules_fact(
    values: Mapping[str, Any],
    touchpoint: Touchpoint,
    context: Mapping[str, str],
    declines: Mapping[str, int],
    action_ids: list[str],
    known_customer: bool,
) -> dict[str, Any]:
    """The one fact the rules see: typed features, touchpoint, ctx_<key> context, declines_30d__<action>."""
    fact: dict[str, Any] = {k: v for k, v in values.items() if v is not None and v != ""}
    fact["touchpoint"] = touchpoint.name
    fact["known_customer"] = known_customer
    for key, value in context.items():
        fact[f"ctx_{key}"] = value
    for action_id in action_ids:
        fact[f"declines_30d__{action_id}"] = declines.get(action_id, 0)
    return fact


class EligibilityPolicy:
    """Applies the catalogue (touchpoint, validity window, mandatory-only) and the rules to the candidates."""

    def __init__(self, catalogue: Catalogue, rules: RulesEngine, languages: list[str]) -> None:
        self.catalogue = catalogue
        self.rules = rules
        self.languages = languages

    def evaluate(self, fact: Mapping[str, Any], touchpoint: Touchpoint, today: dt.date) -> Eligible:
        outcome = self.rules.evaluate(fact)
        applicable = self.catalogue.applicable(touchpoint, today)
        result = Eligible(actions=[])
        excluded: dict[str, Suppression] = {}
        suppressed: dict[str, Suppression] = {}
        language_priority = None
        for d in outcome.directives:
            result.rules_fired.append(RuleFired(d.rule_id, d.kind, d.action_id or d.value, d.reason_code))
            if d.kind == "exclude":
                excluded.setdefault(d.action_id, Suppression(d.action_id, d.reason_code, d.rule_id))
            elif d.kind == "suppress":
                suppressed.setdefault(d.action_id, Suppression(d.action_id, d.reason_code, d.rule_id))
            elif d.kind == "require":
                result.mandatory.add(d.action_id)
                result.reasons.setdefault(d.action_id, []).append(d.reason_code)
            elif d.kind == "boost":
                result.boosts[d.action_id] = result.boosts.get(d.action_id, 1.0) * d.factor
                result.reasons.setdefault(d.action_id, []).append(d.reason_code)
            elif d.kind == "set_language":
                # directives come highest priority first: the first supported language wins
                if language_priority is None and d.value in self.languages:
                    result.language, language_priority = d.value, d.priority
            elif d.kind == "follow_up":
                result.follow_ups.append((d.value, d.action_id))

        applicable_ids = {a.action_id for a in applicable}
        for action_id in sorted(result.mandatory - applicable_ids):
            result.suppressed.append(Suppression(action_id, "not_offered_at_touchpoint", "catalogue"))
        for action in applicable:
            aid = action.action_id
            if aid in excluded:
                result.suppressed.append(excluded[aid])
            elif aid in result.mandatory:
                result.actions.append(action)
            elif action.mandatory_only:
                result.suppressed.append(Suppression(aid, "only_when_required", "catalogue"))
            elif aid in suppressed:
                result.suppressed.append(suppressed[aid])
            else:
                result.actions.append(action)
        result.mandatory &= {a.action_id for a in result.actions}
        return result
