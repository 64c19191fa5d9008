"""Eligibility's order of precedence, row by row as decision/eligibility.py's docstring states it: exclude >
require > suppress and limit_offers > boost, mandatory_only, and the fallback a required action names; each
through EligibilityPolicy with a tiny catalogue and rules compiled from YAML."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from decision.arbitration import Ranked, arbitrate
from decision.catalogue import Catalogue
from decision.domain import Touchpoint
from decision.eligibility import EligibilityPolicy, Eligible
from rules.engine import RulesEngine
from tests.helpers import SCHEMA

TODAY = dt.date(2026, 12, 3)
TOUCHPOINT = Touchpoint.CHECKIN_KIOSK


def action(**spec: Any) -> dict[str, Any]:
    """A catalogue entry offered at the kiosk, with English texts."""
    return {
        "kind": "offer",
        "value": 10,
        "touchpoints": [TOUCHPOINT.name],
        "title": {"en": "an offer"},
        "messages": {"en": {"agent": "offer", "screen": "offer", "voice": "offer"}},
        **spec,
    }


def policy(tmp_path: Path, then: list[dict[str, Any]], **actions: dict[str, Any]) -> EligibilityPolicy:
    """A catalogue of ``actions`` (points, lounge and seat by default) and one rule for gold customers."""
    actions = actions or {"points": action(), "lounge": action(), "seat": action()}
    tmp_path.mkdir(parents=True, exist_ok=True)
    catalogue_path = tmp_path / "actions.yaml"
    catalogue_path.write_text(yaml.safe_dump({"actions": actions}), encoding="utf-8")
    rules = tmp_path / "policies"
    rules.mkdir()
    rule = {"id": "gold", "description": "gold customers", "when": {"all": [{"field": "tier", "eq": "gold"}]}}
    (rules / "rules.yaml").write_text(yaml.safe_dump({"rules": [{**rule, "then": then}]}), encoding="utf-8")
    catalogue = Catalogue.load(catalogue_path)
    return EligibilityPolicy(catalogue, RulesEngine(rules, catalogue.action_ids, SCHEMA), ["en"])


def eligible(policy: EligibilityPolicy, touchpoint: Touchpoint = TOUCHPOINT) -> Eligible:
    values = SCHEMA.parse({"tier": "gold"}, 0.0)
    return policy.evaluate(policy.fact(values, touchpoint, {}, {}, True), touchpoint, TODAY)


def given(result: Eligible) -> list[str]:
    return sorted(a.action_id for a in result.actions)


def ranked(result: Eligible, propensity: dict[str, float]) -> list[Ranked]:
    """The eligible actions in arbitration's order, each with the acceptance probability given for it."""
    return arbitrate(result.actions, [propensity[a.action_id] for a in result.actions], result.mandatory, result.boosts)


def held(result: Eligible) -> dict[str, str]:
    return {s.action_id: s.reason_code for s in result.suppressed}


def test_exclude_removes_an_action_even_a_required_one(tmp_path: Path):
    result = eligible(
        policy(
            tmp_path,
            [{"require": "points", "reason": "service_recovery"}, {"exclude": "points", "reason": "in_arrears"}],
        )
    )
    assert given(result) == ["lounge", "seat"]
    assert result.mandatory == set()
    assert held(result) == {"points": "in_arrears"}


def test_require_makes_an_action_mandatory_whatever_suppress_says(tmp_path: Path):
    then = [
        {"require": "points", "reason": "service_recovery"},
        {"suppress": ["points", "lounge"], "reason": "declined_twice_30d"},
    ]
    result = eligible(policy(tmp_path, then))
    assert given(result) == ["points", "seat"]
    assert result.mandatory == {"points"}
    assert result.reasons["points"] == ["service_recovery"]
    assert held(result) == {"lounge": "declined_twice_30d"}


def test_limit_offers_holds_back_offers_beyond_the_limit_but_never_a_mandatory_one(tmp_path: Path):
    then = [{"require": "seat", "reason": "service_recovery"}, {"limit_offers": 1, "reason": "offer_limit_visit"}]
    result = eligible(policy(tmp_path, then))
    kept, held_back = result.limit_offers(ranked(result, {"points": 0.9, "lounge": 0.5, "seat": 0.1}))
    assert [r.action.action_id for r in kept] == ["seat", "points"]  # the mandatory one first, then one offer
    assert [(s.action_id, s.reason_code) for s in held_back] == [("lounge", "offer_limit_visit")]


def test_boost_multiplies_a_priority_and_brings_back_nothing_that_was_held_back(tmp_path: Path):
    then = [
        {"boost": "lounge", "by": 2, "reason": "loyal_member"},
        {"boost": ["lounge", "seat"], "by": 1.5, "reason": "loyal_member"},
        {"suppress": "seat", "reason": "declined_twice_30d"},
    ]
    result = eligible(policy(tmp_path, then))
    assert result.boosts == {"lounge": 3.0, "seat": 1.5}
    assert given(result) == ["lounge", "points"]
    ranking = ranked(result, {"lounge": 0.5, "points": 0.2})
    assert [(r.action.action_id, r.priority) for r in ranking] == [("lounge", 15.0), ("points", 2.0)]


def test_a_mandatory_only_action_is_given_only_when_a_rule_requires_it(tmp_path: Path):
    actions = {"points": action(), "upgrade": action(mandatory_only=True)}
    unrequired = eligible(policy(tmp_path / "a", [{"boost": "points", "by": 2, "reason": "loyal_member"}], **actions))
    assert given(unrequired) == ["points"]
    assert held(unrequired) == {"upgrade": "only_when_required"}
    required = eligible(policy(tmp_path / "b", [{"require": "upgrade", "reason": "service_recovery"}], **actions))
    assert given(required) == ["points", "upgrade"] and required.mandatory == {"upgrade"}


def test_a_required_action_that_is_excluded_has_its_otherwise_action_required_instead(tmp_path: Path):
    then = [
        {"require": "seat", "otherwise": "points", "reason": "service_recovery"},
        {"exclude": "seat", "reason": "no_flight_to_upgrade"},
        {"suppress": "points", "reason": "declined_twice_30d"},  # the fallback is required: contact policy yields
    ]
    result = eligible(policy(tmp_path, then))
    assert given(result) == ["lounge", "points"]
    assert result.mandatory == {"points"}
    assert result.reasons["points"] == ["service_recovery", "recovery_fallback"]
    assert held(result) == {"seat": "no_flight_to_upgrade"}


def test_a_required_action_not_offered_at_this_touchpoint_has_its_fallback_required_instead(tmp_path: Path):
    actions = {"seat": action(touchpoints=["CHECKIN_AGENT"]), "points": action()}
    result = eligible(
        policy(tmp_path, [{"require": "seat", "otherwise": "points", "reason": "service_recovery"}], **actions)
    )
    assert given(result) == ["points"] and result.mandatory == {"points"}
    assert held(result) == {"seat": "not_offered_at_touchpoint"}


def test_a_required_fallback_that_cannot_be_given_either_brings_in_its_own_fallback(tmp_path: Path):
    then = [
        {"require": "seat", "otherwise": "lounge", "reason": "service_recovery"},
        {"require": "lounge", "otherwise": "points", "reason": "service_recovery"},
        {"exclude": ["seat", "lounge"], "reason": "in_arrears"},
    ]
    result = eligible(policy(tmp_path, then))
    assert given(result) == ["points"] and result.mandatory == {"points"}
    assert held(result) == {"seat": "in_arrears", "lounge": "in_arrears"}


def test_a_sold_out_required_action_promotes_its_fallback_and_a_sold_out_fallback_ends_the_chain(tmp_path: Path):
    result = eligible(policy(tmp_path, [{"require": "seat", "otherwise": "lounge", "reason": "service_recovery"}]))
    assert result.mandatory == {"seat"}
    result.drop({"seat"}, "capacity_exhausted", "capacity")
    assert given(result) == ["lounge", "points"] and result.mandatory == {"lounge"}
    assert result.reasons["lounge"] == ["service_recovery", "recovery_fallback"]
    result.drop({"lounge"}, "capacity_exhausted", "capacity")
    assert given(result) == ["points"] and result.mandatory == set()
    assert held(result) == {"seat": "capacity_exhausted", "lounge": "capacity_exhausted"}


def test_a_sold_out_action_does_not_come_back_as_the_fallback_of_its_own_fallback(tmp_path: Path):
    then = [
        {"require": "seat", "otherwise": "lounge", "reason": "service_recovery"},
        {"require": "lounge", "otherwise": "seat", "reason": "service_recovery"},
    ]
    result = eligible(policy(tmp_path, then))
    result.drop({"seat"}, "capacity_exhausted", "capacity")
    result.drop({"lounge"}, "capacity_exhausted", "capacity")
    assert given(result) == ["points"] and result.mandatory == set()
