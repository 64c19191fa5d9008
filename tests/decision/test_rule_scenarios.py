"""The shipped rule scenarios (rules/scenarios) pass offline, a wrong expectation fails, a bad file is named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from decision.cli import main
from decision.scenarios import DEFAULT_SCENARIO_DIR, ScenarioFileError, ScenarioRunner, load_scenarios
from decision.scoring import LightGBMScorer
from decision.settings import Settings
from decision.strategy import RuleFiles, Strategy, load_strategy
from features.schema import FeatureSchema

SCHEMA = FeatureSchema.load()
SCENARIOS = load_scenarios(DEFAULT_SCENARIO_DIR, SCHEMA)


@pytest.fixture(scope="module")
def strategy(demo_model_dir: Path) -> Strategy:
    settings = Settings(_env_file=None)
    files = RuleFiles(settings.policy_dir, settings.catalogue_path, settings.messages_path)
    return load_strategy(files, SCHEMA, LightGBMScorer(demo_model_dir, SCHEMA))


def test_every_scenario_of_the_brief_that_rules_serve_has_scenarios() -> None:
    assert {s.code for s in SCENARIOS} == {f"S{i}" for i in range(1, 11)}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.scenario_id for s in SCENARIOS])
def test_shipped_scenario_passes(strategy: Strategy, scenario) -> None:
    result = ScenarioRunner(strategy, SCHEMA).run(scenario)
    assert result.failures == []


def test_a_wrong_expectation_fails_and_says_what_was_seen_instead(strategy: Strategy) -> None:
    (s1,) = [s for s in SCENARIOS if s.scenario_id == "s1_ife_gold_kiosk"]
    wrong = replace(
        s1,
        expect={
            "first_action": "lounge_pass",
            "language": "it",
            "fired": ["no_credit_in_arrears"],
            "follow_ups": {"apology_letter": ["Dear Mr Smith"]},
            "offers_at_most": 0,
        },
    )
    failures = ScenarioRunner(strategy, SCHEMA).run(wrong).failures
    assert "first action is upgrade_first_class, expected lounge_pass" in failures
    assert "language is 'en', expected 'it'" in failures
    assert any(f.startswith("rule no_credit_in_arrears did not fire (fired: ") for f in failures)
    assert "the apology_letter does not say 'Dear Mr Smith'" in failures
    assert any(f.endswith("expected at most 0") for f in failures)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "scenarios: [{id: a, given: {touchpoint: KIOSK}, expect: {language: en}}]",
            "given.touchpoint: unknown touchpoint 'KIOSK'; accepted: CHECKIN_KIOSK",
        ),
        (
            "scenarios: [{id: a, given: {touchpoint: IVR, customer: {tierr: gold}}, expect: {language: en}}]",
            "given.customer: unknown feature(s) tierr",
        ),
        ("scenarios: [{id: a, given: {touchpoint: IVR}, expect: {langage: en}}]", "expect: unknown key(s) langage"),
        ("scenarios: [{id: a, given: {touchpoint: IVR}}]", "needs 'given'"),
        (
            "scenarios: [{id: a, given: {touchpoint: IVR, contacts: [{declined: x}]}, expect: {language: en}}]",
            "given.contacts[0]: when: days_ago or hours_ago",
        ),
        ("scenarios: {a: 1}", "expected a top-level 'scenarios:' list"),
    ],
)
def test_a_bad_scenario_file_is_reported_with_file_scenario_and_key(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(ScenarioFileError) as raised:
        load_scenarios(tmp_path, SCHEMA)
    assert str(raised.value).startswith("mine.yaml")
    assert expected in str(raised.value)


def test_nba_rules_test_reports_each_scenario_and_fails_on_a_failing_one(
    demo_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBA_MODEL_DIR", str(demo_model_dir))
    assert main(["rules", "test", "--only", "S2"]) == 0
    out = capsys.readouterr().out
    assert "PASS  S2   s2_italian_by_phone" in out and "S1 " not in out
    assert out.rstrip().splitlines()[-1].startswith("4 passed, 0 failed  (rules ")
    (tmp_path / "wrong.yaml").write_text(
        "scenarios:\n  - id: wrong\n    scenario: S2\n    given: {touchpoint: IVR, customer: {first_language: it}}\n"
        "    expect: {language: en}\n"
    )
    assert main(["rules", "test", "--scenarios", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  S2   wrong" in out and "language is 'it', expected 'en'" in out and "0 passed, 1 failed" in out


def test_nba_rules_check_refuses_a_bad_rule_file_naming_file_rule_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - id: typo\n    when: {all: [{field: predicted_lvt, gte: 5}]}\n"
        "    then: [{exclude: lounge_pass, reason: in_arrears}]\n"
    )
    assert main(["rules", "check", "--policy-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: rule 'typo': field 'predicted_lvt': unknown field; did you mean predicted_ltv" in err
    assert main(["rules", "check"]) == 0
    assert ", OK" in capsys.readouterr().out
