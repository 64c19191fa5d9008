"""The narrator: which customer features its texts are built from is the messages file's to say, not the code's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from decision.domain import Touchpoint
from decision.explanation import Narrator, NarratorError
from decision.settings import Settings
from features.schema import FeatureSchema

SCHEMA = FeatureSchema.load()
NOW = time.time()
MESSAGES = Settings(_env_file=None).messages_path


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


def test_a_feature_the_schema_does_not_have_is_refused_naming_file_and_entry(tmp_path: Path):
    def misspell(document: dict) -> None:
        document["features"]["placeholders"]["problem"] = "open_problems"

    with pytest.raises(NarratorError, match=r"messages.yaml: features: .*placeholders.problem: 'open_problems'"):
        Narrator(messages_with(tmp_path, misspell), SCHEMA)


def test_a_continuity_kind_without_its_customer_facing_text_is_refused(tmp_path: Path):
    def forget(document: dict) -> None:
        del document["continuity_customer"]["pending_application"]

    with pytest.raises(NarratorError, match="continuity: pending_application has no text in continuity_customer"):
        Narrator(messages_with(tmp_path, forget), SCHEMA)


def test_a_continuity_kind_that_is_not_a_feature_is_refused(tmp_path: Path):
    def add(document: dict) -> None:
        document["continuity"]["open_claim"] = document["continuity_customer"]["open_claim"] = {"en": "{problem}"}

    with pytest.raises(NarratorError, match="continuity: open_claim is not a feature of the schema"):
        Narrator(messages_with(tmp_path, add), SCHEMA)
