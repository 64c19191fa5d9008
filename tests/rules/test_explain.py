"""`nba rules explain`'s verdicts: they say why, and they never disagree with the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.schema import FeatureSchema
from rules.engine import DEFAULT_POLICY_DIR, RulesEngine
from rules.explain import explain_rules

ACTIONS = tuple(yaml.safe_load((DEFAULT_POLICY_DIR.parent / "actions.yaml").read_text("utf-8"))["actions"])
SCHEMA = FeatureSchema.load()
ENGINE = RulesEngine(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA)


def verdict(fact: dict[str, Any], name: str) -> tuple[bool, str]:
    found = [v for v in explain_rules(ENGINE.policies.rules, fact) if v.name == name]
    assert len(found) == 1
    return found[0].matched, found[0].why


def test_a_rule_that_did_not_match_says_which_condition_failed_and_with_what_value() -> None:
    matched, why = verdict(
        {"predicted_ltv": 1200.0, "last_incident_type": "ife_broken", "last_incident_days": 12},
        "service_recovery_ife",
    )
    assert not matched
    assert "predicted_ltv = 1200.0 is not >= 5000" in why
    assert "last_incident_long_haul is absent (wanted = True)" in why
    assert "last_incident_type" not in why  # only what failed


def test_a_rule_that_matched_says_what_held() -> None:
    matched, why = verdict({"touchpoint": "IVR"}, "one_offer_per_call_on_the_phone")
    assert matched and why == "touchpoint = 'IVR' is = 'IVR'"


def test_any_reports_every_alternative_when_none_held() -> None:
    matched, why = verdict({"ctx_flight": "AZ610", "ctx_cabin": "economy"}, "upgrade_needs_economy_flight")
    assert not matched
    assert why.startswith("none of: ") and "context.flight" in why and "context.cabin" in why


def test_expanded_rules_are_explained_per_action() -> None:
    matched, why = verdict({"declines_30d__lounge_pass": 3}, "declined_twice_in_30_days/lounge_pass")
    assert matched and "declines_30d.lounge_pass = 3" in why


_NUMBERS = st.one_of(
    st.sampled_from([0, 0.2, 0.3, 0.4, 0.5, 4, 6, 14, 30, 60, 5000, 4999.99]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**40), 2**40),
)


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


def _category(name: str) -> st.SearchStrategy[Any]:
    return _maybe(st.sampled_from(SCHEMA.by_name[name].values))


FACTS = st.fixed_dictionaries(
    {
        **{
            name: _category(name)
            for name in ("domain", "tier", "first_language", "last_incident_type", "best_response_channel")
        },
        **{
            name: _maybe(_NUMBERS)
            for name in (
                "predicted_ltv",
                "churn_risk",
                "last_incident_days",
                "last_complaint_days",
                "long_haul_share",
                "flights_12m",
                "trip_overdue_days",
                "tenure_years",
                "best_channel_response_rate",
                "card_expires_in_days",
                "offers_4h",
                "sent_30d__card_renewal_reminder",
                "declines_30d__lounge_pass",
            )
        },
        "in_arrears": _maybe(st.booleans()),
        "last_incident_long_haul": _maybe(st.booleans()),
        "known_customer": st.booleans(),
        "touchpoint": st.sampled_from(["CHECKIN_KIOSK", "IVR", "MOBILE_APP", "BRANCH_TELLER"]),
        "ctx_flight": _maybe(st.text(max_size=6)),
        "ctx_cabin": _maybe(st.sampled_from(["economy", "first", "x"])),
        "ctx_language": _maybe(st.sampled_from(["en", "it", "zh-Hant", "de", ""])),
    }
).map(lambda drawn: {k: v for k, v in drawn.items() if v is not None})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fact=FACTS)
def test_the_explanation_agrees_with_the_engine_on_every_rule(fact: dict[str, Any]) -> None:
    explained = {v.rule_id for v in explain_rules(ENGINE.policies.rules, fact) if v.matched}
    assert explained == set(ENGINE.evaluate(fact).fired)


def test_the_command_explains_a_scenario_customer(capsys: Any, tmp_path: Path) -> None:
    from decision.cli import main

    assert main(["rules", "explain", "--scenario", "s1_ife_gold_kiosk"]) == 0
    out = capsys.readouterr().out
    assert "MATCH service_recovery_ife (service_recovery.yaml, priority 100)" in out
    assert "no    bank_products_need_bank_customer" not in out  # an airline customer: it matched
    assert "predicted_ltv = " in out
