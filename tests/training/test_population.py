"""The demo population (personas, valid values, realistic shape, determinism) and its ground truth."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from decision.catalogue import Catalogue
from features.schema import SECONDS_PER_DAY, FeatureSchema
from training.population import PERSONAS, generate_population, simulate_responses, true_accept_probability

NOW = 1_800_000_000.0  # a fixed clock: the population must be a function of (seed, now) only


@pytest.fixture(scope="module")
def schema() -> FeatureSchema:
    return FeatureSchema.load()


@pytest.fixture(scope="module")
def population() -> list[dict[str, str]]:
    return generate_population(10_000, seed=7, now=NOW)


@pytest.fixture(scope="module")
def by_id(population: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {customer["customer_id"]: customer for customer in population}


def test_personas_come_first_and_ordinary_customers_are_on_top_of_them(population):
    assert [c["customer_id"] for c in population[:3]] == list(PERSONAS)
    ordinary = [c for c in population if c["customer_id"] not in PERSONAS]
    assert len(ordinary) == 10_000
    assert ordinary[0]["customer_id"] == "cust-000001"
    assert ordinary[-1]["customer_id"] == "cust-010000"


def test_customer_ids_are_unique(population):
    ids = [c["customer_id"] for c in population]
    assert len(set(ids)) == len(ids)


def test_s1_persona_is_a_valuable_passenger_with_a_recent_long_haul_ife_incident(by_id, schema):
    raw = by_id["demo-ife-gold"]
    values = schema.parse(raw, NOW)
    assert values["domain"] == "airline"
    assert values["tier"] in {"gold", "platinum"}
    assert 10_000 <= values["predicted_ltv"] <= 14_000
    assert values["last_incident_type"] == "ife_broken"
    assert values["last_incident_days"] == pytest.approx(10.0, abs=0.01)
    assert raw["last_incident_flight"] == "AZ611"
    assert values["last_incident_long_haul"] is True
    assert values["first_language"] == "en"
    assert (raw["title"], raw["first_name"], raw["last_name"]) == ("Ms", "Alice", "Morgan")


def test_s2_persona_is_an_italian_passenger_without_incident(by_id, schema):
    raw = by_id["demo-italian"]
    values = schema.parse(raw, NOW)
    assert values["domain"] == "airline"
    assert values["first_language"] == "it"
    assert raw["title"] == "Sig."
    assert raw["first_name"] and raw["last_name"]
    assert values["last_incident_type"] == "none"
    assert values["last_incident_days"] is None
    assert raw["last_incident_flight"] == ""


def test_s7_persona_is_a_bank_customer_with_an_open_card_dispute(by_id, schema):
    raw = by_id["demo-bank-open-issue"]
    values = schema.parse(raw, NOW)
    assert values["domain"] == "bank"
    assert "card dispute" in raw["open_problem"]
    assert values["has_credit_card"] is True
    assert values["first_language"] == "en"


def test_every_stored_value_is_valid_for_its_schema_type(population, schema):
    # Category values must be among the schema's values: otherwise parse would silently read the default.
    for customer in population:
        assert set(customer) == {"customer_id"} | {f.name for f in schema.features}
        for feature in schema.features:
            raw = customer[feature.name]
            where = f"{customer['customer_id']}.{feature.name}={raw!r}"
            if feature.type == "category":
                assert raw in feature.values, where
            elif feature.type == "boolean":
                assert raw in {"0", "1"}, where
            elif feature.type in {"number", "integer"} and not (raw == "" and feature.default is None):
                assert np.isfinite(float(raw)), where
                if feature.type == "integer":
                    assert raw == str(int(raw)), where
            elif feature.type == "timestamp":
                assert raw == "" or (raw.isdigit() and float(raw) <= NOW), where


def test_incident_fields_agree_with_each_other(population):
    for customer in population:
        has_incident = customer["last_incident_type"] != "none"
        assert (customer["last_incident"] != "") == has_incident, customer["customer_id"]
        if customer["domain"] == "airline" and has_incident:
            assert customer["last_incident_flight"].startswith("AZ"), customer["customer_id"]


def test_population_has_the_intended_shape(population, schema):
    values = [schema.parse(c, NOW) for c in population]
    domains = collections.Counter(v["domain"] for v in values)
    assert 0.60 <= domains["airline"] / len(values) <= 0.70
    languages = collections.Counter(v["first_language"] for v in values)
    assert languages.most_common(1)[0][0] == "en"
    assert set(languages) == set(schema.by_name["first_language"].values)
    incident_share = sum(v["last_incident_type"] != "none" for v in values) / len(values)
    assert 0.01 <= incident_share <= 0.08
    arrears_share = sum(v["in_arrears"] for v in values if v["domain"] == "bank") / domains["bank"]
    assert 0.01 <= arrears_share <= 0.08
    assert all(0 < v["last_incident_days"] < 366 for v in values if v["last_incident_days"] is not None)


def test_value_is_heavy_tailed(population, schema):
    # S8: the top 20% of customers hold most of the value.
    ltv = np.sort([schema.parse(c, NOW)["predicted_ltv"] for c in population])[::-1]
    top_fifth = ltv[: len(ltv) // 5].sum()
    assert top_fifth / ltv[ltv > 0].sum() > 0.6


def test_same_seed_and_clock_give_the_same_population():
    assert generate_population(500, seed=3, now=NOW) == generate_population(500, seed=3, now=NOW)
    assert generate_population(500, seed=3, now=NOW) != generate_population(500, seed=4, now=NOW)


def test_incident_ages_follow_the_clock(schema):
    # Timestamps are relative to `now`, so a persona's incident is 10 days old whatever the clock.
    later = NOW + 100 * SECONDS_PER_DAY
    raw = generate_population(0, now=later)[0]
    assert schema.parse(raw, later)["last_incident_days"] == pytest.approx(10.0, abs=0.01)


def test_ground_truth_makes_business_sense(by_id, schema):
    ife_gold = schema.parse(by_id["demo-ife-gold"], NOW)
    bank = schema.parse(by_id["demo-bank-open-issue"], NOW)
    assert true_accept_probability(ife_gold, "upgrade_first_class") > 0.9
    # Airline offers barely land with bank customers, and bank products with passengers.
    assert true_accept_probability(bank, "lounge_pass") < 0.01
    assert true_accept_probability(ife_gold, "mortgage_review") < 0.01
    # Lounge passes appeal to frequent high-tier lounge users more than to occasional flyers.
    occasional = ife_gold | {"tier": "none", "lounge_visits_12m": 0, "long_haul_share": 0.0}
    assert true_accept_probability(ife_gold, "lounge_pass") > 2 * true_accept_probability(occasional, "lounge_pass")
    # Retention offers land with those about to leave.
    leaving = bank | {"churn_risk": 0.8}
    assert true_accept_probability(leaving, "retention_fee_waiver") > 2 * true_accept_probability(
        bank | {"churn_risk": 0.05}, "retention_fee_waiver"
    )
    assert 0.0 < true_accept_probability(ife_gold, "an_action_added_later") < 0.1


def test_in_domain_base_rates_are_between_2_and_30_percent_except_the_upgrade(population, schema):
    values = [schema.parse(c, NOW) for c in population[:3000]]
    catalogue = Catalogue.load()
    for action_id in catalogue.action_ids:
        rates = {
            domain: np.mean([true_accept_probability(v, action_id) for v in values if v["domain"] == domain])
            for domain in ("airline", "bank")
        }
        best = max(rates.values())
        if action_id == "upgrade_first_class":
            assert best > 0.85
        else:
            assert 0.02 <= best <= 0.30, (action_id, rates)


def test_simulated_history_logs_uniform_propensities_and_plausible_outcomes(schema):
    population = generate_population(2000, seed=5, now=NOW)
    catalogue = Catalogue.load()
    log = simulate_responses(population, actions_per_customer=4, seed=1, now=NOW, schema=schema, catalogue=catalogue)
    assert len(log) == 4 * len(population)
    assert {entry["propensity"] for entry in log} == {4 / len(catalogue.action_ids)}
    per_customer = collections.defaultdict(list)
    for entry in log:
        per_customer[entry["customer_id"]].append(entry["action_id"])
    assert all(len(set(actions)) == 4 for actions in per_customer.values())
    shown = collections.Counter(entry["action_id"] for entry in log)
    expected = len(log) / len(catalogue.action_ids)
    assert all(abs(count - expected) < 0.2 * expected for count in shown.values())
    accepted = np.array([entry["accepted"] for entry in log])
    truth = np.array([entry["true_probability"] for entry in log])
    assert abs(accepted.mean() - truth.mean()) < 0.02
    assert log == simulate_responses(
        population, actions_per_customer=4, seed=1, now=NOW, schema=schema, catalogue=catalogue
    )
