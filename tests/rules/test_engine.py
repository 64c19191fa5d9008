"""The rules engine on the shipped policies, and its immunity to the durable-rules hazards."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.schema import FeatureSchema
from rules.engine import DEFAULT_POLICY_DIR, Directive, RuleEvaluationError, RuleFileError, RulesEngine, RulesOutcome

ACTIONS = tuple(yaml.safe_load((DEFAULT_POLICY_DIR.parent / "actions.yaml").read_text("utf-8"))["actions"])
SCHEMA = FeatureSchema.load()
AIRLINE_OFFERS = {
    "upgrade_first_class",
    "bonus_points_recovery",
    "lounge_pass",
    "extra_legroom_seat",
    "extra_bag",
    "fast_track",
    "travel_insurance",
}
BANK_PRODUCTS = {
    "premium_card_upgrade",
    "savings_account",
    "mortgage_review",
    "personal_loan",
    "retention_fee_waiver",
}
CREDIT_PRODUCTS = {"personal_loan", "premium_card_upgrade", "cobrand_credit_card"}


@pytest.fixture(scope="module")
def engine() -> RulesEngine:
    return RulesEngine(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA)


def customer(**overrides: Any) -> dict[str, Any]:
    """A realistic fact (~40 keys) as the decision flow builds it: an airline customer at a check-in kiosk.

    An override of None removes the key (an absent feature, e.g. no incident on record).
    """
    fact: dict[str, Any] = {k: v for k, v in SCHEMA.defaults().items() if v is not None}
    fact.update(
        tier="gold",
        tenure_years=6.0,
        predicted_ltv=1200.0,
        churn_risk=0.1,
        flights_12m=9,
        first_language="en",
        touchpoint="CHECKIN_KIOSK",
        known_customer=True,
        ctx_flight="XY123",
        ctx_cabin="economy",
    )
    fact.update({f"declines_30d__{action}": 0 for action in ACTIONS})
    for key, value in overrides.items():
        if value is None:
            fact.pop(key, None)
        else:
            fact[key] = value
    return fact


def ife_victim(**overrides: Any) -> dict[str, Any]:
    """Service recovery: a valuable customer whose IFE broke on a long-haul flight 10 days ago."""
    values: dict[str, Any] = dict(
        predicted_ltv=8000.0,
        last_incident_type="ife_broken",
        last_incident_days=10.0,
        last_incident_long_haul=True,
        last_incident_flight="XY88",
    )
    values.update(overrides)
    return customer(**values)


def actions_of(outcome: RulesOutcome, kind: str) -> set[str]:
    return {d.action_id for d in outcome.directives if d.kind == kind}


def only(outcome: RulesOutcome, kind: str, action_id: str = "") -> Directive:
    found = [d for d in outcome.directives if d.kind == kind and (not action_id or d.action_id == action_id)]
    assert len(found) == 1, f"expected one {kind} {action_id}, got {found}"
    return found[0]


# ---- S1: service recovery ------------------------------------------------------------------------


def test_valuable_ife_victim_is_required_first_class_with_an_apology_letter(engine: RulesEngine) -> None:
    outcome = engine.evaluate(ife_victim())
    require = only(outcome, "require", "upgrade_first_class")
    assert (require.rule_id, require.reason_code, require.priority, require.otherwise) == (
        "service_recovery_ife",
        "service_recovery",
        100,
        "bonus_points_recovery",  # when no seat is left
    )
    letters = [(d.value, d.action_id, d.reason_code) for d in outcome.directives if d.kind == "follow_up"]
    assert letters == [  # the letter confirms the upgrade, or the points given instead
        ("apology_letter", "upgrade_first_class", "service_recovery"),
        ("apology_letter", "bonus_points_recovery", "service_recovery"),
    ]
    assert "upgrade_first_class" not in actions_of(outcome, "exclude")  # a flight in economy: upgradable
    assert "service_recovery_ife" in outcome.fired


@pytest.mark.parametrize(
    "change",
    [
        {"predicted_ltv": 100.0},
        {"last_incident_days": 31.0},
        {"last_incident_long_haul": False},
        {"last_incident_type": "delay"},
        {"last_incident_days": None},
    ],
    ids=["low_value", "too_long_ago", "short_haul", "other_incident", "no_incident_date"],
)
def test_no_first_class_requirement_when_one_condition_fails(engine: RulesEngine, change: dict[str, Any]) -> None:
    outcome = engine.evaluate(ife_victim(**change))
    assert not actions_of(outcome, "require")
    assert not actions_of(outcome, "follow_up")
    assert "service_recovery_ife" not in outcome.fired


def test_recent_incident_boosts_recovery_points_old_or_none_excludes_them(engine: RulesEngine) -> None:
    recent = engine.evaluate(customer(last_incident_type="delay", last_incident_days=45.0))
    boost = only(recent, "boost", "bonus_points_recovery")
    assert (boost.factor, boost.reason_code) == (3.0, "recent_service_problem")
    assert "bonus_points_recovery" not in actions_of(recent, "exclude")
    for fact in (customer(last_incident_type="delay", last_incident_days=61.0), customer()):
        outcome = engine.evaluate(fact)
        assert only(outcome, "exclude", "bonus_points_recovery").reason_code == "no_recent_incident"
        assert "bonus_points_recovery" not in actions_of(outcome, "boost")


# ---- S2: language --------------------------------------------------------------------------------


def test_first_language_sets_the_language(engine: RulesEngine) -> None:
    directive = only(engine.evaluate(customer(first_language="it")), "set_language")
    assert (directive.value, directive.rule_id, directive.reason_code) == (
        "it",
        "language_first_language",
        "first_language",
    )


def test_touchpoint_language_outranks_first_language(engine: RulesEngine) -> None:
    outcome = engine.evaluate(customer(first_language="it", ctx_language="zh-Hant"))
    languages = [d for d in outcome.directives if d.kind == "set_language"]
    assert [(d.value, d.priority) for d in languages] == [("zh-Hant", 200), ("it", 100)]
    assert outcome.directives[0] == languages[0]  # the highest priority comes first


def test_unsupported_languages_set_nothing(engine: RulesEngine) -> None:
    outcome = engine.evaluate(customer(first_language="de", ctx_language="fr"))
    assert not [d for d in outcome.directives if d.kind == "set_language"]


# ---- eligibility and contact policy --------------------------------------------------------------


def test_bank_customer_gets_no_airline_offers_and_airline_customer_no_bank_products(
    engine: RulesEngine,
) -> None:
    bank = engine.evaluate(customer(domain="bank", touchpoint="BRANCH_TELLER", ctx_flight=None, ctx_cabin=None))
    assert actions_of(bank, "exclude") >= AIRLINE_OFFERS
    assert {d.reason_code for d in bank.directives if d.rule_id == "airline_offers_need_airline_customer"} == {
        "not_an_airline_customer"
    }
    # (the fee waiver is still excluded for this customer, by the churn rule: not at risk)
    assert not (BANK_PRODUCTS - {"retention_fee_waiver"}) & actions_of(bank, "exclude")
    airline = engine.evaluate(customer())
    assert actions_of(airline, "exclude") >= BANK_PRODUCTS
    assert not (AIRLINE_OFFERS - {"bonus_points_recovery"}) & actions_of(airline, "exclude")


def test_no_credit_products_for_customers_in_arrears(engine: RulesEngine) -> None:
    arrears = engine.evaluate(customer(domain="bank", in_arrears=True))
    assert {d.action_id for d in arrears.directives if d.reason_code == "in_arrears"} == CREDIT_PRODUCTS
    assert not {d for d in engine.evaluate(customer(domain="bank")).directives if d.reason_code == "in_arrears"}


@pytest.mark.parametrize(
    ("context", "excluded"),
    [({"ctx_flight": None}, True), ({"ctx_cabin": "first"}, True), ({}, False)],
    ids=["no_flight", "already_first", "economy_flight"],
)
def test_upgrade_needs_a_flight_not_in_first(engine: RulesEngine, context: dict[str, Any], excluded: bool) -> None:
    outcome = engine.evaluate(ife_victim(**context))
    assert ("upgrade_first_class" in actions_of(outcome, "exclude")) is excluded


def test_fee_waiver_kept_for_customers_at_risk_and_boosted_for_valuable_ones(engine: RulesEngine) -> None:
    safe = engine.evaluate(customer(domain="bank", churn_risk=0.1))
    assert only(safe, "exclude", "retention_fee_waiver").reason_code == "not_at_risk"
    at_risk = engine.evaluate(customer(domain="bank", churn_risk=0.6, predicted_ltv=6000.0))
    assert "retention_fee_waiver" not in actions_of(at_risk, "exclude")
    assert only(at_risk, "boost", "retention_fee_waiver").factor == 2.0


def test_two_declines_in_30_days_suppress_the_action_one_does_not(engine: RulesEngine) -> None:
    twice = engine.evaluate(customer(declines_30d__lounge_pass=2))
    directive = only(twice, "suppress", "lounge_pass")
    assert (directive.rule_id, directive.reason_code) == ("declined_twice_in_30_days", "declined_twice_30d")
    assert not actions_of(engine.evaluate(customer(declines_30d__lounge_pass=1)), "suppress")


def test_an_expanded_rule_reports_its_id_once(engine: RulesEngine) -> None:
    outcome = engine.evaluate(customer(declines_30d__lounge_pass=2, declines_30d__fast_track=3))
    assert actions_of(outcome, "suppress") == {"lounge_pass", "fast_track"}
    assert outcome.fired.count("declined_twice_in_30_days") == 1


def test_directives_come_highest_priority_first_in_a_stable_order(engine: RulesEngine) -> None:
    fact = ife_victim(first_language="it", ctx_language="en", declines_30d__extra_bag=2)
    outcome = engine.evaluate(fact)
    priorities = [d.priority for d in outcome.directives]
    assert priorities == sorted(priorities, reverse=True) and priorities[0] == 200
    assert engine.evaluate(fact) == outcome


def test_rule_ids_and_version_describe_the_policies(engine: RulesEngine) -> None:
    assert {"service_recovery_ife", "language_context_override", "declined_twice_in_30_days"} <= set(engine.rule_ids)
    assert len(engine.rule_ids) == len(set(engine.rule_ids))
    assert len(engine.version) == 12 and int(engine.version, 16) >= 0
    assert RulesEngine(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA).version == engine.version


def test_version_changes_when_a_rule_file_changes(tmp_path: Path) -> None:
    policy = tmp_path / "one.yaml"
    policy.write_text(_rule("a", "domain", "bank", "lounge_pass"), "utf-8")
    before = RulesEngine(tmp_path, ACTIONS, SCHEMA).version
    policy.write_text(_rule("a", "domain", "bank", "fast_track"), "utf-8")
    assert RulesEngine(tmp_path, ACTIONS, SCHEMA).version != before


# ---- the engine agrees with a plain reading of the rule files ------------------------------------


def _reference_fired(fact: Mapping[str, Any]) -> set[str]:
    """Which rules fire, read straight from the YAML with Python semantics: an absent field fails every
    test but ``exists: false``."""
    fired = set()
    for path in sorted(DEFAULT_POLICY_DIR.glob("*.yaml")):
        for rule in yaml.safe_load(path.read_text("utf-8"))["rules"]:
            actions = ACTIONS if rule.get("for_each_action") else ("",)
            if any(_holds(rule["when"], fact, action) for action in actions):
                fired.add(rule["id"])
    return fired


def _holds(node: Mapping[str, Any], fact: Mapping[str, Any], action: str) -> bool:
    if "all" in node:
        return all(_holds(item, fact, action) for item in node["all"])
    if "any" in node:
        return any(_holds(item, fact, action) for item in node["any"])
    field = node["field"].replace("{action}", action)
    key = ("ctx_" + field[8:] if field.startswith("context.") else field).replace("declines_30d.", "declines_30d__")
    ((op, expected),) = ((k, v) for k, v in node.items() if k != "field")
    if op == "exists":
        return (key in fact) is expected
    if key not in fact:
        return False
    value = fact[key]
    return {
        "eq": lambda: value == expected,
        "ne": lambda: value != expected,
        "gt": lambda: value > expected,
        "gte": lambda: value >= expected,
        "lt": lambda: value < expected,
        "lte": lambda: value <= expected,
        "in": lambda: value in expected,
        "not_in": lambda: value not in expected,
    }[op]()


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


# The rules' thresholds, their neighbours, and any finite number (1e-05 and 1e16 once broke durable).
_NUMBERS = st.one_of(
    st.sampled_from([0, 0.3, 0.5, 2, 30, 60, 5000, 0.29999999999999993, 4999.999999999999, 1e-05, 1e16]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**62), 2**62),
)
# Any text a request may carry (gRPC strings are valid UTF-8: no lone surrogates).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
FACTS = st.fixed_dictionaries(
    {
        "domain": st.sampled_from(SCHEMA.by_name["domain"].values),
        "first_language": st.sampled_from(SCHEMA.by_name["first_language"].values),
        "last_incident_type": st.sampled_from(SCHEMA.by_name["last_incident_type"].values),
        "last_incident_days": _maybe(_NUMBERS),
        "last_incident_long_haul": st.booleans(),
        "predicted_ltv": _NUMBERS,
        "churn_risk": _NUMBERS,
        "in_arrears": st.booleans(),
        "ctx_language": _maybe(st.one_of(st.sampled_from(["en", "it", "zh-Hant", "zh-Hans", "de"]), _TEXT)),
        "ctx_flight": _maybe(_TEXT),
        "ctx_cabin": _maybe(st.one_of(st.sampled_from(["economy", "first"]), _TEXT)),
        **{f"declines_30d__{action}": _maybe(st.integers(0, 4)) for action in ACTIONS},
    }
).map(lambda drawn: customer(**drawn))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fact=FACTS)
def test_fires_exactly_the_rules_whose_conditions_hold(engine: RulesEngine, fact: dict[str, Any]) -> None:
    assert set(engine.evaluate(fact).fired) == _reference_fired(fact)


@pytest.mark.parametrize(
    ("value", "at_risk"),
    [(1e-05, False), (-1e-07, False), (0.29999999999999993, False), (0.3, True), (1e16, True), (1e300, True)],
)
def test_numbers_python_writes_with_an_exponent_compare_correctly(
    engine: RulesEngine, value: float, at_risk: bool
) -> None:
    outcome = engine.evaluate(customer(domain="bank", churn_risk=value))
    assert ("retention_fee_waiver" in actions_of(outcome, "exclude")) is not at_risk


@pytest.mark.parametrize("missing", [float("nan"), float("inf"), None])
def test_a_value_json_cannot_carry_reads_as_absent(engine: RulesEngine, missing: float | None) -> None:
    outcome = engine.evaluate(customer(last_incident_type="delay", last_incident_days=missing))
    assert only(outcome, "exclude", "bonus_points_recovery").reason_code == "no_recent_incident"


def test_request_text_is_compared_as_written_and_cannot_inject_fields(tmp_path: Path) -> None:
    (tmp_path / "city.yaml").write_text(
        "rules:\n"
        "  - id: taipei\n"
        "    when: {all: [{field: context.city, eq: 台北}]}\n"
        "    then: [{exclude: lounge_pass, reason: taipei}]\n"
        "  - id: arrears\n"
        "    when: {all: [{field: in_arrears, eq: true}]}\n"
        "    then: [{exclude: personal_loan, reason: in_arrears}]\n",
        "utf-8",
    )
    engine = RulesEngine(tmp_path, ACTIONS, SCHEMA)
    assert engine.evaluate(customer(ctx_city="台北")).fired == ("taipei",)
    assert engine.evaluate(customer(ctx_city='x", "in_arrears": true, "z": "')).fired == ()


# ---- durable-rules hazards -----------------------------------------------------------------------


def _varied_facts(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    facts = []
    for _ in range(n):
        facts.append(
            ife_victim(
                predicted_ltv=rng.choice([100.0, 4999.0, 5000.0, 9000.0]),
                last_incident_days=rng.choice([None, 5.0, 30.0, 45.0, 90.0]),
                domain=rng.choice(["airline", "bank"]),
                in_arrears=rng.random() < 0.3,
                first_language=rng.choice(["en", "it", "de", "zh-Hans"]),
                ctx_language=rng.choice([None, "zh-Hant", "fr"]),
                churn_risk=rng.random(),
                **{f"declines_30d__{rng.choice(ACTIONS)}": rng.randint(0, 3)},
            )
        )
    return facts


def test_concurrent_evaluations_each_get_their_own_single_threaded_result(engine: RulesEngine) -> None:
    threads_n, per_thread = 8, 300
    facts = _varied_facts(threads_n * per_thread, seed=7)
    expected = [engine.evaluate(fact) for fact in facts]
    results: list[RulesOutcome | None] = [None] * len(facts)
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        start.wait()
        try:
            for i in range(t, len(facts), threads_n):
                results[i] = engine.evaluate(facts[i])
        except BaseException as error:  # reported below, with the thread's result
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    mismatches = [i for i, (got, want) in enumerate(zip(results, expected, strict=True)) if got != want]
    assert not mismatches, f"{len(mismatches)} evaluations differ, e.g. fact {mismatches[0]}"
    assert len({len(outcome.directives) for outcome in expected}) > 3  # the facts really differ


def test_no_state_leaks_from_one_evaluation_to_the_next(engine: RulesEngine) -> None:
    assert actions_of(engine.evaluate(ife_victim()), "require") == {"upgrade_first_class"}
    after = engine.evaluate(customer(predicted_ltv=100.0))
    assert not actions_of(after, "require") and not actions_of(after, "follow_up")
    assert "service_recovery_ife" not in after.fired


def test_an_evaluation_answers_the_same_whatever_came_before(engine: RulesEngine) -> None:
    # Every evaluation reuses one durable session and retracts its fact afterwards: no history may show.
    facts = _varied_facts(400, seed=11)
    forward = [engine.evaluate(fact) for fact in facts]
    order = list(range(len(facts)))
    random.Random(3).shuffle(order)
    shuffled = {i: engine.evaluate(facts[i]) for i in order}
    assert all(shuffled[i] == outcome for i, outcome in enumerate(forward))
    # The same fact twice in a row fires twice: the first one was retracted, not left to be seen as a duplicate.
    victim = ife_victim()
    assert engine.evaluate(victim) == engine.evaluate(victim)
    assert actions_of(engine.evaluate(victim), "require") == {"upgrade_first_class"}
    assert len({len(outcome.directives) for outcome in forward}) > 3  # the facts really differ


def test_thousands_of_evaluations_and_failing_rule_actions_leave_no_session_behind(tmp_path: Path) -> None:
    # The shipped policies plus a rule whose action fails: its template names a context key the fact lacks.
    for path in DEFAULT_POLICY_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "zz_broken.yaml").write_text(
        "rules:\n"
        "  - id: broken_template\n"
        "    when: {all: [{field: context.trigger, eq: boom}]}\n"
        "    then: [{set_language: '{context.missing}', reason: broken}]\n",
        "utf-8",
    )
    engine = RulesEngine(tmp_path, ACTIONS, SCHEMA)
    for i in range(3_000):  # well past durable's 1,024 live sessions
        victim = i % 2 == 0
        outcome = engine.evaluate(ife_victim() if victim else customer(predicted_ltv=100.0))
        assert (actions_of(outcome, "require") == {"upgrade_first_class"}) is victim
    for _ in range(1_100):
        with pytest.raises(RuleEvaluationError, match=r"broken_template.*ctx_missing"):
            engine.evaluate(ife_victim(ctx_trigger="boom"))
    assert actions_of(engine.evaluate(ife_victim()), "require") == {"upgrade_first_class"}
    assert not actions_of(engine.evaluate(customer()), "require")


@pytest.mark.timeout(30)
def test_a_rule_of_only_negative_conditions_fires_once(tmp_path: Path) -> None:
    # durable also matches its own session-state object; a condition of only "exists: false" used to match it
    # and fire forever inside assert_fact.
    (tmp_path / "negative.yaml").write_text(
        "rules:\n"
        "  - id: no_flight\n"
        "    when: {any: [{field: context.flight, exists: false}]}\n"
        "    then: [{exclude: upgrade_first_class, reason: no_flight}]\n",
        "utf-8",
    )
    outcome = RulesEngine(tmp_path, ACTIONS, SCHEMA).evaluate({"domain": "airline"})
    assert outcome.directives == (Directive("exclude", "no_flight", "no_flight", "upgrade_first_class"),)


def _rule(rule_id: str, field: str, value: str, excluded: str) -> str:
    return (
        f"rules:\n  - id: {rule_id}\n    when: {{all: [{{field: {field}, eq: {value}}}]}}\n"
        f"    then: [{{exclude: {excluded}, reason: {rule_id}_reason}}]\n"
    )


def test_a_brand_new_engine_answers_its_first_evaluation(tmp_path: Path) -> None:
    (tmp_path / "only.yaml").write_text(_rule("bank_no_lounge", "domain", "bank", "lounge_pass"), "utf-8")
    outcome = RulesEngine(tmp_path, ACTIONS, SCHEMA).evaluate(customer(domain="bank"))
    assert outcome.fired == ("bank_no_lounge",)
    assert outcome.directives == (Directive("exclude", "bank_no_lounge", "bank_no_lounge_reason", "lounge_pass"),)


def test_engines_on_different_policies_do_not_mix_results(tmp_path: Path) -> None:
    first, second, same_as_first = tmp_path / "first", tmp_path / "second", tmp_path / "copy"
    for folder, excluded in ((first, "lounge_pass"), (second, "fast_track"), (same_as_first, "lounge_pass")):
        folder.mkdir()
        # the same rule id and file name everywhere: only the ruleset names keep them apart
        (folder / "rules.yaml").write_text(_rule("bank_rule", "domain", "bank", excluded), "utf-8")
    engines = [RulesEngine(folder, ACTIONS, SCHEMA) for folder in (first, second, same_as_first)]
    assert engines[0].version == engines[2].version != engines[1].version
    bank = customer(domain="bank")
    for _ in range(50):
        assert [actions_of(e.evaluate(bank), "exclude") for e in engines] == [
            {"lounge_pass"},
            {"fast_track"},
            {"lounge_pass"},
        ]
    assert actions_of(RulesEngine(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA).evaluate(bank), "exclude") >= AIRLINE_OFFERS


def test_hundreds_of_rules_matching_at_once_all_fire(tmp_path: Path) -> None:
    # durable refuses a fact that more than ~60 rules of one ruleset match (error 303): rules are split.
    lines = ["rules:"]
    for i in range(200):
        lines += [
            f"  - id: rule_{i}",
            f"    when: {{all: [{{field: age, gte: {i % 7}}}, {{field: balance, lt: {100_000 + i}}}]}}",
            "    then: [{exclude: lounge_pass, reason: test}]",
        ]
    (tmp_path / "many.yaml").write_text("\n".join(lines) + "\n")
    outcome = RulesEngine(tmp_path, ACTIONS, SCHEMA).evaluate({"age": 40, "balance": 10.0})
    assert len(outcome.fired) == 200
    assert RulesEngine(tmp_path, ACTIONS, SCHEMA).evaluate({"age": 3, "balance": 10.0}).fired == tuple(
        f"rule_{i}" for i in range(200) if i % 7 <= 3
    )


def test_rules_reading_more_fields_than_durable_takes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "wide.yaml").write_text(
        "rules:\n"
        + "".join(
            f"  - id: wide_{i}\n    when: {{all: [{{field: context.key{i}, eq: x}}]}}\n"
            "    then: [{exclude: lounge_pass, reason: test}]\n"
            for i in range(70)
        )
    )
    with pytest.raises(RuleFileError, match="the rules read 70 different fields; durable-rules takes at most 62"):
        RulesEngine(tmp_path, ACTIONS, SCHEMA)


def test_an_engine_collected_inside_an_evaluation_does_not_deadlock_it() -> None:
    """A replaced engine in a reference cycle is freed by the garbage collector wherever it runs, also inside
    another engine's durable calls (which hold the durable lock): its rulesets are deleted later, not there."""
    import gc

    from rules import engine as engine_module

    gc.disable()
    try:
        gone = RulesEngine(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA)
        gone.cycle = [gone]
        del gone
        collected = threading.Event()

        def collect_inside_the_lock() -> None:
            with engine_module._DURABLE_LOCK:  # as the GC may, at any allocation of an evaluation
                gc.collect()
            collected.set()

        threading.Thread(target=collect_inside_the_lock, daemon=True).start()
        assert collected.wait(10), "the engine's finalizer waited for the lock its own thread held"
    finally:
        gc.enable()
    assert RulesEngine(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA).evaluate({"domain": "airline"}).fired
