"""Eligibility: which actions this customer may get here and now, from the catalogue and the rules' directives.

Order of precedence, strongest first:
  exclude (engagement policy: not eligible, not applicable, not suitable) removes an action, even a required one;
  require makes an action mandatory: ranked first and immune to contact policy; when a required action cannot
    be given (excluded, not offered at this touchpoint, sold out) its ``otherwise`` action is required instead;
  suppress and limit_offers (contact policy) remove non-mandatory actions;
  boost multiplies an action's priority.
set_language and set_channel: the highest-priority rule's choice wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from decision.arbitration import Ranked
from decision.catalogue import Action, Catalogue
from decision.domain import RuleFired, Suppression, Touchpoint
from rules.compiler import Verb
from rules.engine import RulesEngine

DEFAULT_LANGUAGE = "en"
RECOVERY_FALLBACK = "recovery_fallback"


@dataclass(frozen=True)
class OfferLimit:
    """At most ``remaining`` non-mandatory offers in this decision, set by a contact-policy rule."""

    remaining: int
    reason_code: str
    rule_id: str


@dataclass(frozen=True)
class WantedFollowUp:
    kind: str
    action_id: str  # "" = not tied to an action: sent whatever is decided
    channel: str  # "" = the decision's channel
    reason_code: str


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
    channel: str = ""
    channel_reason: str = ""
    follow_ups: list[WantedFollowUp] = field(default_factory=list)
    offer_limit: OfferLimit | None = None
    # A required action -> the action required instead when it cannot be given, with the reason and rule.
    fallbacks: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # Actions a fallback may bring in: applicable here and not excluded (contact policy does not hold them back).
    standby: dict[str, Action] = field(default_factory=dict)

    def drop(self, action_ids: set[str], reason_code: str, source: str) -> None:
        """Remove actions that cannot be given after all (sold out); their fallbacks, if any, step in. A dropped
        action leaves standby too: no fallback brings it back (two required actions naming each other as
        ``otherwise`` would otherwise trade places for ever, and the flow's sold-out loop never end)."""
        self.actions = [a for a in self.actions if a.action_id not in action_ids]
        for action_id in action_ids:
            self.standby.pop(action_id, None)
        self.suppressed.extend(Suppression(a, reason_code, source) for a in sorted(action_ids))
        for action_id in sorted(action_ids & self.mandatory):
            self.mandatory.discard(action_id)
            self.promote_fallback(action_id)

    def promote_fallback(self, action_id: str) -> None:
        if action_id not in self.fallbacks:
            return
        otherwise, reason_code, rule_id = self.fallbacks[action_id]
        action = self.standby.get(otherwise)
        if action is None:
            return
        self.suppressed = [s for s in self.suppressed if s.action_id != otherwise]
        if otherwise not in {a.action_id for a in self.actions}:
            self.actions.append(action)
        self.mandatory.add(otherwise)
        reasons = self.reasons.setdefault(otherwise, [])
        for code in (reason_code, RECOVERY_FALLBACK):
            if code not in reasons:
                reasons.insert(len(reasons) if code == RECOVERY_FALLBACK else 0, code)
        self.rules_fired.append(RuleFired(rule_id, Verb.REQUIRE, otherwise, RECOVERY_FALLBACK))

    def limit_offers(self, ranking: Sequence[Ranked]) -> tuple[list[Ranked], list[Suppression]]:
        """The ranking within the contact policy's offer limit, and the offers it held back; mandatory actions
        are never held back."""
        if self.offer_limit is None:
            return list(ranking), []
        limit = self.offer_limit
        kept, held_back, room = [], [], limit.remaining
        for ranked in ranking:
            if ranked.mandatory:
                kept.append(ranked)
            elif room > 0:
                kept.append(ranked)
                room -= 1
            else:
                held_back.append(Suppression(ranked.action.action_id, limit.reason_code, limit.rule_id))
        return kept, held_back


class EligibilityPolicy:
    """Applies the catalogue (touchpoint, validity window, mandatory-only) and the rules to the candidates."""

    def __init__(self, catalogue: Catalogue, rules: RulesEngine, languages: list[str], version: str = "") -> None:
        self.catalogue = catalogue
        self.rules = rules
        self.languages = languages
        # The rules version decisions report: the rule files' hash, or (from load_strategy) rules and texts'.
        self.version = version or rules.version
        # What the rules' contact counters read of the customer's contact history, with the feature read.
        self.contact_query = rules.policies.contact_query
        self._no_contacts = self.contact_query.zeros
        # The catalogue's applicable actions per touchpoint for one day at a time: the same for every decision
        # of the day, and this policy (so this cache) is replaced whole with the catalogue on a reload.
        self._applicable: tuple[dt.date, dict[Touchpoint, list[Action]]] = (dt.date.min, {})

    def fact(
        self,
        values: Mapping[str, Any],
        touchpoint: Touchpoint,
        context: Mapping[str, str],
        contact_counts: Mapping[str, int],
        known_customer: bool,
    ) -> dict[str, Any]:
        """The one fact the rules see: typed features, touchpoint, ctx_<key> context, contact counters."""
        fact: dict[str, Any] = {k: v for k, v in values.items() if v is not None and v != ""}
        fact["touchpoint"] = touchpoint.name
        fact["known_customer"] = known_customer
        for key, value in context.items():
            fact[f"ctx_{key}"] = value
        fact.update(self._no_contacts)
        fact.update(contact_counts)
        return fact

    def evaluate(self, fact: Mapping[str, Any], touchpoint: Touchpoint, today: dt.date) -> Eligible:
        outcome = self.rules.evaluate(fact)
        applicable = self._applicable_on(touchpoint, today)
        result = Eligible(actions=[])
        excluded: dict[str, Suppression] = {}
        suppressed: dict[str, Suppression] = {}
        language_chosen = channel_chosen = False
        for d in outcome.directives:  # highest priority first
            target = d.action_id or d.value or (str(d.limit) if d.kind is Verb.LIMIT_OFFERS else "")
            result.rules_fired.append(RuleFired(d.rule_id, d.kind, target, d.reason_code))
            match d.kind:
                case Verb.EXCLUDE:
                    excluded.setdefault(d.action_id, Suppression(d.action_id, d.reason_code, d.rule_id))
                case Verb.SUPPRESS:
                    suppressed.setdefault(d.action_id, Suppression(d.action_id, d.reason_code, d.rule_id))
                case Verb.REQUIRE:
                    result.mandatory.add(d.action_id)
                    result.reasons.setdefault(d.action_id, []).append(d.reason_code)
                    if d.otherwise:
                        result.fallbacks.setdefault(d.action_id, (d.otherwise, d.reason_code, d.rule_id))
                case Verb.BOOST:
                    result.boosts[d.action_id] = result.boosts.get(d.action_id, 1.0) * d.factor
                    result.reasons.setdefault(d.action_id, []).append(d.reason_code)
                case Verb.SET_LANGUAGE:
                    if not language_chosen and d.value in self.languages:
                        result.language, language_chosen = d.value, True
                case Verb.SET_CHANNEL:
                    if not channel_chosen and d.value and d.value != "none":
                        result.channel, result.channel_reason, channel_chosen = d.value, d.reason_code, True
                case Verb.FOLLOW_UP:
                    result.follow_ups.append(WantedFollowUp(d.value, d.action_id, d.channel, d.reason_code))
                case Verb.LIMIT_OFFERS:
                    remaining = max(0, d.limit - int(fact.get(d.counted, 0) or 0)) if d.counted else d.limit
                    if result.offer_limit is None or remaining < result.offer_limit.remaining:
                        result.offer_limit = OfferLimit(remaining, d.reason_code, d.rule_id)

        applicable_ids = {a.action_id for a in applicable}
        for action in applicable:
            if action.action_id not in excluded:
                result.standby[action.action_id] = action
        unavailable = sorted(result.mandatory - applicable_ids)
        for action_id in unavailable:
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
        given = {a.action_id for a in result.actions}
        cannot_give = {aid for aid in result.mandatory if aid not in given}
        result.mandatory &= given
        for action_id in sorted(cannot_give):
            result.promote_fallback(action_id)
        return result

    def _applicable_on(self, touchpoint: Touchpoint, today: dt.date) -> list[Action]:
        """``catalogue.applicable``, computed once per touchpoint and day (callers never change the list)."""
        day, by_touchpoint = self._applicable
        if day != today:
            by_touchpoint = {}
            self._applicable = (today, by_touchpoint)  # one assignment: a concurrent decision sees old or new
        applicable = by_touchpoint.get(touchpoint)
        if applicable is None:
            applicable = by_touchpoint[touchpoint] = self.catalogue.applicable(touchpoint, today)
        return applicable
