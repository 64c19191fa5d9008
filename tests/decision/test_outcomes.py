"""The offline decision log keeps the outcome contract of the Redis one: the same outcome again is a duplicate,
IGNORED may become ACCEPTED or DECLINED later, ACCEPTED and DECLINED are final."""

from __future__ import annotations

from pathlib import Path

import pytest

from decision.decision_log import MemoryDecisionLog, OutcomeAlreadyFinal
from decision.domain import Decision, Outcome
from decision.scenarios import DEFAULT_SCENARIO_DIR, ScenarioRunner, load_scenarios
from decision.scoring import LightGBMScorer
from decision.settings import Settings
from decision.strategy import RuleFiles, load_strategy
from features.schema import FeatureSchema


@pytest.fixture(scope="module")
def decision(demo_model_dir: Path) -> Decision:
    schema = FeatureSchema.load()
    settings = Settings(_env_file=None)
    files = RuleFiles(settings.policy_dir, settings.catalogue_path, settings.messages_path)
    strategy = load_strategy(files, schema, LightGBMScorer(demo_model_dir, schema))
    made = ScenarioRunner(strategy, schema).run(load_scenarios(DEFAULT_SCENARIO_DIR, schema)[0]).decision
    assert made.actions
    return made


def test_an_ignored_offer_may_be_accepted_later_and_then_never_changes(decision: Decision) -> None:
    log = MemoryDecisionLog()
    action = decision.actions[0].action_id
    ignored = log.record_outcome(decision, action, Outcome.IGNORED, at=1.0)
    assert log.record_outcome(decision, action, Outcome.IGNORED, at=2.0) == type(ignored)(ignored.outcome_id, True)
    accepted = log.record_outcome(decision, action, Outcome.ACCEPTED, at=3.0)
    assert not accepted.duplicate and accepted.outcome_id != ignored.outcome_id
    assert log.record_outcome(decision, action, Outcome.ACCEPTED, at=4.0).duplicate
    for changed in (Outcome.DECLINED, Outcome.IGNORED):
        with pytest.raises(OutcomeAlreadyFinal) as caught:
            log.record_outcome(decision, action, changed, at=5.0)
        assert caught.value.stored is Outcome.ACCEPTED
    assert [o for _, _, o in log.outcomes] == [Outcome.IGNORED, Outcome.ACCEPTED]
