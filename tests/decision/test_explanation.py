"""The narrator: the explanation follows the model's reasons for this customer, and which customer features its
texts are built from is the messages file's to say, not the code's."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from decision.domain import Decision, DecisionRequest, Touchpoint
from decision.explanation import Narrator, NarratorError
from decision.flow import FlowLimits
from decision.offline import offline_flow
from decision.settings import Settings
from decision.strategy import Strategy
from tests.helpers import SCHEMA, strategy_from

NOW = time.time()
MESSAGES = Settings(_env_file=None).messages_path
BANK_CUSTOMER = {"domain": "bank", "tier": "gold", "tenure_years": "8", "churn_risk": "0.1", "predicted_ltv": "3000"}


@pytest.fixture(scope="module")
def strategy(demo_model_dir: Path) -> Strategy:
    return strategy_from(demo_model_dir, Settings(_env_file=None).policy_dir)


def decided_for(strategy: Strategy, profile: dict[str, str]) -> Decision:
    """The decision for one customer with ``profile``, at the contact centre (an agent reads the reasons)."""
    offline = offline_flow(strategy, SCHEMA, FlowLimits(feature_max_age_s=86_400.0, explain_top_features=3), NOW)
    offline.store.write_profiles([{"customer_id": "c1", **profile}], NOW)
    flow = offline.flow
    return flow.decide(DecisionRequest("c1", Touchpoint.CONTACT_CENTER, {}, "r1", 20))


def test_the_explanation_names_the_top_feature_and_changes_with_its_value(strategy: Strategy):
    wealthy = decided_for(strategy, {**BANK_CUSTOMER, "balance": "80000"})
    top = wealthy.explanation.top_features[0]
    assert top.feature == "balance" and top.value == "80000.0"
    assert f"given {top.label}" in wealthy.explanation.text  # the model's first reason, named first
    without = decided_for(strategy, {**BANK_CUSTOMER, "balance": "0"})
    assert without.explanation.top_features[0].feature != "balance"
    assert without.explanation.text != wealthy.explanation.text
    assert top.label not in without.explanation.text


def test_a_retry_in_another_language_retells_the_decision_in_the_words_a_new_one_would_have(strategy: Strategy):
    """A teller switching the page's language sends the visit's request again with ``context.language``: the same
    decision in that language, as a decision made in it from the start reads, and nothing offered anew."""
    limits = FlowLimits(feature_max_age_s=86_400.0, explain_top_features=3)
    profile = {"customer_id": "c1", **BANK_CUSTOMER, "last_name": "Rossi", "title": "Mr"}
    offline = offline_flow(strategy, SCHEMA, limits, NOW)
    offline.store.write_profiles([profile], NOW)
    first = offline.flow.decide(DecisionRequest("c1", Touchpoint.BRANCH_TELLER, {}, "visit-1", 3))
    assert first.explanation.language == "en" and first.actions

    for language in ("it", "zh-Hant", "en"):
        again = DecisionRequest("c1", Touchpoint.BRANCH_TELLER, {"language": language}, "visit-1", 3)
        retold = offline.flow.decide(again)
        # what a decision made in this language from the start says, for the same request
        fresh = offline_flow(strategy, SCHEMA, limits, NOW)
        fresh.store.write_profiles([profile], NOW)
        told = fresh.flow.decide(again)
        assert retold.decision_id == first.decision_id
        assert retold.explanation.language == language
        assert [(a.action_id, a.score) for a in retold.actions] == [(a.action_id, a.score) for a in first.actions]
        assert [(a.title, a.message) for a in retold.actions] == [(a.title, a.message) for a in told.actions]
        assert retold.explanation.greeting == told.explanation.greeting
        assert retold.explanation.text == told.explanation.text
        assert retold.explanation.top_features == told.explanation.top_features
    assert retold.answered_before and not first.answered_before
    assert replace(retold, answered_before=False) == first, "back in the decision's own language: as answered"
    assert list(offline.log.decisions) == [first.decision_id], "retelling logs nothing and counts no offer"


def messages_with(tmp_path: Path, change) -> Path:
    """A copy of the shipped messages file with ``change`` applied to its parsed document."""
    document = yaml.safe_load(MESSAGES.read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / "messages.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_the_features_a_deployment_names_in_the_messages_file_fill_the_narrators_placeholders(tmp_path: Path):
    def rename(document: dict) -> None:
        document["features"]["given_name"] = "title"
        document["features"]["placeholders"]["problem"] = "last_complaint_topic"

    shipped, renamed = Narrator(MESSAGES, SCHEMA), Narrator(messages_with(tmp_path, rename), SCHEMA)
    values = SCHEMA.parse({"first_name": "Anna", "title": "Ms", "last_complaint_topic": "the meal"}, NOW)
    before = shipped.template_values(values, {}, "en", Touchpoint.CHECKIN_AGENT)
    after = renamed.template_values(values, {}, "en", Touchpoint.CHECKIN_AGENT)
    assert (before["greeting_name"], before["problem"]) == ("Anna", "")
    assert (after["greeting_name"], after["problem"]) == ("Ms", "the meal")


def test_a_features_section_without_a_name_for_each_part_is_refused_naming_file_and_entry(tmp_path: Path):
    def forget(document: dict) -> None:
        del document["features"]["family_name"]
        document["features"]["placeholders"]["problem"] = ["open_problem"]

    with pytest.raises(NarratorError, match=r"messages.yaml: features: .*not a name: family_name, placeholders"):
        Narrator(messages_with(tmp_path, forget), SCHEMA)


def test_a_feature_this_deployments_schema_does_not_have_shows_as_nothing(tmp_path: Path):
    def rename(document: dict) -> None:
        document["features"]["placeholders"]["problem"] = "ticket_summary"
        document["continuity"]["ticket"] = document["continuity_customer"]["ticket"] = {"en": "Ticket: {problem}."}

    narrator = Narrator(messages_with(tmp_path, rename), SCHEMA)
    values = SCHEMA.parse({"open_problem": "card blocked"}, NOW)
    assert narrator.template_values(values, {}, "en", Touchpoint.CHECKIN_AGENT)["problem"] == ""


def test_a_continuity_kind_without_its_customer_facing_text_is_refused(tmp_path: Path):
    def forget(document: dict) -> None:
        del document["continuity_customer"]["pending_application"]

    with pytest.raises(NarratorError, match="continuity_customer has no text for pending_application"):
        Narrator(messages_with(tmp_path, forget), SCHEMA)
