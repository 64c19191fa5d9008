"""Rule files -> durable conditions, and the errors an analyst gets for a bad rule file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.schema import FeatureSchema
from rules.compiler import FACT_MARKER, CompiledPolicies, ReasonTexts, RuleFileError, compile_policies
from rules.engine import DEFAULT_POLICY_DIR

ACTIONS = tuple(yaml.safe_load((DEFAULT_POLICY_DIR.parent / "actions.yaml").read_text("utf-8"))["actions"])
SCHEMA = FeatureSchema.load()


def compile_text(tmp_path: Path, text: str, name: str = "policy.yaml") -> CompiledPolicies:
    (tmp_path / name).write_text(text, "utf-8")
    return compile_policies(tmp_path, ACTIONS, SCHEMA)


def one_rule(when: str, then: str = "[{exclude: lounge_pass, reason: test}]", rule_id: str = "bad_rule") -> str:
    return f"rules:\n  - id: {rule_id}\n    when: {when}\n    then: {then}\n"


def test_the_shipped_policies_compile() -> None:
    policies = compile_policies(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA)
    assert policies.files == (
        "campaigns.yaml",
        "care.yaml",
        "channel.yaml",
        "contact_policy.yaml",
        "eligibility.yaml",
        "language.yaml",
        "recognition.yaml",
        "service_recovery.yaml",
    )
    ids = {rule.rule_id for rule in policies.rules}
    assert {
        "service_recovery_ife",
        "service_recovery_points",
        "language_context_override",
        "language_first_language",
        "declined_twice_in_30_days",
        "no_credit_in_arrears",
    } <= ids


def test_a_rule_compiles_to_one_durable_condition_on_the_request_fact() -> None:
    policies = compile_policies(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA)
    rule = next(r for r in policies.rules if r.rule_id == "service_recovery_ife")
    assert rule.condition == {
        "$and": [
            {FACT_MARKER: 1},
            {
                "$and": [
                    {"$gte": {"predicted_ltv": 5000}},
                    {"$or": [{"last_incident_type": "ife_broken"}, {"last_incident_type": "seat_broken"}]},
                    {"$lte": {"last_incident_days": 30}},
                    {"last_incident_long_haul": True},
                ]
            },
        ]
    }
    upgrade = next(r for r in policies.rules if r.rule_id == "upgrade_needs_economy_flight")
    assert upgrade.condition["$and"][1] == {"$or": [{"$nex": {"ctx_flight": 1}}, {"ctx_cabin": "first"}]}
    (definition,) = policies.ruleset_definitions()
    # one durable rule per compiled rule, plus the one that matches every request fact
    assert len(definition) == len(policies.rules) + 1
    assert all(list(spec) == ["all"] and len(spec["all"]) == 1 for spec in definition.values())


def test_for_each_action_repeats_the_rule_for_every_catalogue_action() -> None:
    policies = compile_policies(DEFAULT_POLICY_DIR, ACTIONS, SCHEMA)
    expanded = [r for r in policies.rules if r.rule_id == "declined_twice_in_30_days"]
    assert sorted(r.directives[0].action_id for r in expanded) == sorted(ACTIONS)
    lounge = next(r for r in expanded if r.directives[0].action_id == "lounge_pass")
    assert lounge.condition["$and"][1] == {"$gte": {"declines_30d__lounge_pass": 2}}
    assert "declines_30d__lounge_pass" in policies.fact_keys


def test_operators_compile_to_durable_tests(tmp_path: Path) -> None:
    conditions = (
        "{any: [{field: tier, ne: none}, {field: age, gt: 30}, {field: age, lt: 70}, "
        "{field: tier, not_in: [none, silver]}, {field: context.seat, exists: true}, "
        "{all: [{field: touchpoint, eq: IVR}, {field: known_customer, eq: false}]}]}"
    )
    rule = compile_text(tmp_path, one_rule(conditions)).rules[0]
    assert rule.condition["$and"][1] == {
        "$or": [
            {"$neq": {"tier": "none"}},
            {"$gt": {"age": 30}},
            {"$lt": {"age": 70}},
            {"$and": [{"$neq": {"tier": "none"}}, {"$neq": {"tier": "silver"}}]},
            {"$ex": {"ctx_seat": 1}},
            {"$and": [{"touchpoint": "IVR"}, {"known_customer": False}]},
        ]
    }


# ---- errors name the file, the rule and the field ------------------------------------------------

ERRORS = {
    "unknown_feature": (
        one_rule("{all: [{field: predicted_ltvv, gte: 5000}]}"),
        ["field 'predicted_ltvv'", "unknown field", "predicted_ltv", "context.<key>"],
    ),
    "timestamp_without_days": (
        one_rule("{all: [{field: last_incident, lte: 30}]}"),
        ["field 'last_incident'", "last_incident_days"],
    ),
    "text_compared_with_a_number": (
        one_rule("{all: [{field: predicted_ltv, gte: high}]}"),
        ["field 'predicted_ltv'", "'high'", "a number"],
    ),
    "number_for_a_boolean": (
        one_rule("{all: [{field: in_arrears, eq: 1}]}"),
        ["field 'in_arrears'", "true or false"],
    ),
    "category_value_not_among_its_values": (
        one_rule("{all: [{field: last_incident_type, in: [ife_broken, ife_broke]}]}"),
        ["field 'last_incident_type'", "'ife_broke'", "seat_broken"],
    ),
    "ordering_a_category": (
        one_rule("{all: [{field: tier, gte: gold}]}"),
        ["field 'tier'", "gte compares numbers"],
    ),
    "unknown_touchpoint": (
        one_rule("{all: [{field: touchpoint, eq: KIOSK}]}"),
        ["field 'touchpoint'", "'KIOSK'", "CHECKIN_KIOSK"],
    ),
    "unknown_operator": (
        one_rule("{all: [{field: age, greater: 3}]}"),
        ["field 'age'", "greater", "gte"],
    ),
    "exists_not_a_boolean": (
        one_rule("{all: [{field: context.flight, exists: maybe}]}"),
        ["field 'context.flight'", "exists takes true or false"],
    ),
    "declines_of_an_unknown_action": (
        one_rule("{all: [{field: declines_30d.nope, gte: 2}]}", rule_id="x"),
        [
            "policy.yaml: rule 'x': field 'declines_30d.nope': unknown action 'nope'; known actions: ",
            "lounge_pass",
        ],
    ),
    "counter_of_an_unknown_touchpoint_or_action": (
        one_rule("{all: [{field: offers_1d.KIOSK, gte: 2}]}"),
        ["field 'offers_1d.KIOSK'", "unknown action 'KIOSK' or a touchpoint (CHECKIN_KIOSK"],
    ),
    "counter_window_past_the_kept_history": (
        one_rule("{all: [{field: declines_120d.lounge_pass, gte: 2}]}"),
        ["field 'declines_120d.lounge_pass'", "kept 90 days"],
    ),
    "declines_of_no_action": (
        one_rule("{all: [{field: declines_30d, gte: 2}]}"),
        ["field 'declines_30d'", "which action's declines"],
    ),
    "counter_compared_with_text": (
        one_rule("{all: [{field: offers_4h, gte: many}]}"),
        ["field 'offers_4h'", "'many' does not fit: this field is a whole number"],
    ),
    "limit_counting_something_else_than_offers": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{limit_offers: 2, counting: declines_1d.lounge_pass, reason: t}]"),
        ["then[0] limit_offers", "'counting' names the offers already made"],
    ),
    "limit_not_a_number": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{limit_offers: two, reason: t}]"),
        ["then[0] limit_offers", "a whole number >= 0, got 'two'"],
    ),
    "otherwise_the_same_action": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{require: lounge_pass, otherwise: lounge_pass, reason: t}]"),
        ["then[0] require", "'otherwise' must name another action"],
    ),
    "otherwise_an_unknown_action": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{require: lounge_pass, otherwise: spa_day, reason: t}]"),
        ["then[0] require", "unknown action 'spa_day'"],
    ),
    "otherwise_on_a_boost": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{boost: lounge_pass, by: 2, otherwise: fast_track, reason: t}]"),
        ["then[0] boost", "does not take otherwise"],
    ),
    "unknown_channel": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{set_channel: pigeon, reason: t}]"),
        ["then[0] set_channel", "unknown channel 'pigeon'", "sms"],
    ),
    "follow_up_by_an_unknown_channel": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{follow_up: apology_letter, channel: fax, reason: t}]"),
        ["then[0] follow_up", "unknown channel 'fax'"],
    ),
    "unknown_directive": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{recommend: lounge_pass, reason: test}]"),
        ["then[0]", "unknown directive 'recommend'", "require, exclude"],
    ),
    "directive_of_an_unknown_action": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{require: upgrade_firstclass, reason: test}]"),
        ["then[0] require", "unknown action 'upgrade_firstclass'", "did you mean upgrade_first_class"],
    ),
    "unknown_action_in_a_list": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{exclude: [lounge_pass, spa_day], reason: test}]"),
        ["then[0] exclude", "unknown action 'spa_day'"],
    ),
    "follow_up_of_an_unknown_action": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{follow_up: apology_letter, action: spa_day, reason: test}]"),
        ["then[0] follow_up", "unknown action 'spa_day'"],
    ),
    "boost_without_factor": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{boost: lounge_pass, reason: test}]"),
        ["then[0] boost", "'by'"],
    ),
    "directive_without_reason": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{exclude: lounge_pass}]"),
        ["then[0] exclude", "'reason'"],
    ),
    "template_of_an_unknown_field": (
        one_rule("{all: [{field: age, gt: 3}]}", "[{set_language: '{first_lang}', reason: test}]"),
        ["then[0] set_language", "field 'first_lang'", "first_language"],
    ),
    "missing_when": (
        "rules:\n  - id: bad_rule\n    then: [{exclude: lounge_pass, reason: test}]\n",
        ["missing 'when'"],
    ),
    "missing_then": (
        "rules:\n  - id: bad_rule\n    when: {all: [{field: age, gt: 3}]}\n",
        ["missing 'then'"],
    ),
    "misspelt_rule_key": (
        one_rule("{all: [{field: age, gt: 3}]}") + "    priorty: 3\n",
        ["unknown key(s) priorty"],
    ),
    "action_placeholder_outside_for_each_action": (
        one_rule("{all: [{field: 'declines_30d.{action}', gte: 2}]}"),
        ["{action}", "for_each_action"],
    ),
    "duplicate_rule_id_in_one_file": (
        one_rule("{all: [{field: age, gt: 3}]}") + one_rule("{all: [{field: age, gt: 4}]}").removeprefix("rules:\n"),
        ["duplicate rule id", "first defined in policy.yaml"],
    ),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_a_bad_rule_is_reported_with_its_file_rule_and_field(tmp_path: Path, case: str) -> None:
    text, fragments = ERRORS[case]
    rule_id = yaml.safe_load(text)["rules"][0]["id"]
    with pytest.raises(RuleFileError) as raised:
        compile_text(tmp_path, text)
    message = str(raised.value)
    assert message.startswith(f"policy.yaml: rule '{rule_id}': "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_rule_id_used_in_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "a_first.yaml").write_text(one_rule("{all: [{field: age, gt: 3}]}", rule_id="twice"), "utf-8")
    with pytest.raises(RuleFileError, match=r"^b_second\.yaml: rule 'twice': duplicate rule id.*a_first\.yaml"):
        compile_text(tmp_path, one_rule("{all: [{field: age, gt: 4}]}", rule_id="twice"), name="b_second.yaml")


@pytest.mark.parametrize("text", ["rules: {id: x}\n", "- id: x\n", "rules: []\nversion: 2\n", "rules: [\n"], ids=str)
def test_a_file_that_is_not_a_rules_list_is_reported(tmp_path: Path, text: str) -> None:
    with pytest.raises(RuleFileError, match=r"^policy\.yaml: "):
        compile_text(tmp_path, text)


def test_a_directory_without_rule_files_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="no \\*.yaml rule files"):
        compile_policies(tmp_path, ACTIONS, SCHEMA)


def test_version_follows_the_files_bytes_and_names(tmp_path: Path) -> None:
    text = one_rule("{all: [{field: age, gt: 3}]}", rule_id="a")
    first = compile_text(tmp_path, text).version
    assert compile_text(tmp_path, text).version == first
    assert compile_text(tmp_path, text.replace("gt: 3", "gt: 4")).version != first
    (tmp_path / "policy.yaml").unlink()
    assert compile_text(tmp_path, text, name="renamed.yaml").version != first


def test_contact_counters_compile_to_fact_keys_and_are_listed_for_the_flow(tmp_path: Path) -> None:
    policies = compile_text(
        tmp_path,
        one_rule(
            "{all: [{field: offers_1d.IVR, gte: 1}, {field: sent_30d.apology_letter, lt: 1}]}",
            "[{limit_offers: 3, counting: offers_4h, reason: t}, {exclude: lounge_pass, reason: t}]",
        ),
    )
    assert policies.rules[0].condition["$and"][1] == {
        "$and": [{"$gte": {"offers_1d__IVR": 1}}, {"$lt": {"sent_30d__apology_letter": 1}}]
    }
    by_key = {counter.key: counter for counter in policies.counters}
    assert set(by_key) == {"offers_1d__IVR", "sent_30d__apology_letter", "offers_4h"}
    assert (by_key["offers_1d__IVR"].event, by_key["offers_1d__IVR"].touchpoint) == ("offered", "IVR")
    assert (by_key["sent_30d__apology_letter"].window_s, by_key["sent_30d__apology_letter"].name) == (
        30 * 86_400,
        "apology_letter",
    )
    assert by_key["offers_4h"].window_s == 4 * 3600
    # the flow reads one count field per counter: hours for the visit, days for the month
    assert set(policies.contact_query.fields) == {"h|offered||IVR", "d|sent|apology_letter|", "h|offered||"}
    limit = policies.rules[0].directives[0]
    assert (limit.kind, limit.limit, limit.counted) == ("limit_offers", 3, by_key["offers_4h"])


def test_rules_without_counters_read_no_contact_history(tmp_path: Path) -> None:
    policies = compile_text(tmp_path, one_rule("{all: [{field: age, gt: 3}]}"))
    assert policies.counters == () and policies.contact_query.fields == ()


def test_a_reason_without_text_in_every_language_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(one_rule("{all: [{field: age, gt: 3}]}", rule_id="r"), "utf-8")
    languages = ("en", "it", "zh-Hant", "zh-Hans")
    with pytest.raises(RuleFileError) as raised:
        compile_policies(tmp_path, ACTIONS, SCHEMA, ReasonTexts(languages, {"other": languages}))
    assert "policy.yaml: rule 'r': then[0] exclude: reason 'test' has no text" in str(raised.value)
    assert "en, it, zh-Hant, zh-Hans" in str(raised.value)
    with pytest.raises(RuleFileError, match=r"reason 'test' has no text in zh-Hant, zh-Hans in messages.yaml"):
        compile_policies(tmp_path, ACTIONS, SCHEMA, ReasonTexts(languages, {"test": ("en", "it")}))
    assert compile_policies(tmp_path, ACTIONS, SCHEMA, ReasonTexts(languages, {"test": languages})).rules
