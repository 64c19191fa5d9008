"""``nba rules check`` checks the texts too: every placeholder of a template in the messages file or the catalogue
must be a field the narrator can fill, a request context field must sit in a variant ("[on {flight}|today]"),
and the features each action's "why" may name must be features; a wrong one is named with its file, text,
language and placeholder, and the command fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from decision.cli import main
from decision.scoring import LightGBMScorer
from decision.settings import Settings
from decision.strategy import RuleFiles, load_strategy
from features.schema import FeatureSchema

SETTINGS = Settings(_env_file=None)


@pytest.fixture
def rule_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the shipped policy directory, catalogue and messages file, to break."""
    policies = shutil.copytree(SETTINGS.policy_dir, tmp_path / "policies")
    catalogue = Path(shutil.copy(SETTINGS.catalogue_path, tmp_path / "actions.yaml"))
    messages = Path(shutil.copy(SETTINGS.messages_path, tmp_path / "messages.yaml"))
    return policies, catalogue, messages


def check(files: tuple[Path, Path, Path]) -> int:
    policies, catalogue, messages = files
    args = ["--policy-dir", str(policies), "--catalogue", str(catalogue), "--messages", str(messages)]
    return main(["rules", "check", *args])


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_shipped_texts_pass(rule_files, capsys):
    assert check(rule_files) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")


def test_a_misspelt_placeholder_in_an_actions_message_is_named_with_its_action_language_and_delivery(
    rule_files, capsys
):
    _, catalogue, _ = rule_files
    replace_in(catalogue, "da stiva[ al volo {flight}]", "da stiva[ al volo {fligth}]")
    assert check(rule_files) == 1
    err = capsys.readouterr().err
    assert "actions.yaml: action 'extra_bag': messages.it.screen: {fligth} is not a field a text can show" in err


def test_a_wrong_placeholder_in_the_messages_file_is_named_with_its_section_key_and_language(rule_files, capsys):
    _, _, messages = rule_files
    replace_in(messages, "{tier}會員，已是我們", "{teir}會員，已是我們")
    letter = "Gentile {greeting_name},\n\n      ci scusiamo"
    replace_in(messages, letter, letter.replace("greeting_name", "action_title"))
    assert check(rule_files) == 1
    err = capsys.readouterr().err
    assert "messages.yaml: reasons.loyal_member.zh-Hant: {teir} is not a field a text can show" in err
    assert "messages.yaml: follow_ups" not in err  # {action_title} is a letter's own field
    replace_in(messages, "Motivo: {reason}", "Motivo: {action_title}")
    assert check(rule_files) == 1
    assert "messages.yaml: why.it: {action_title} is not a field a text can show" in capsys.readouterr().err


def test_a_context_field_outside_a_variant_would_render_blank_and_is_refused(rule_files, capsys):
    _, catalogue, _ = rule_files
    replace_in(catalogue, "Add a checked bag[ to {flight}] for 30 euros", "Add a checked bag to {flight} for 30 euros")
    assert check(rule_files) == 1
    err = capsys.readouterr().err
    assert "action 'extra_bag': messages.en.screen: {flight} may be missing from a request" in err


def test_an_unclosed_variant_and_a_why_naming_an_unknown_feature_are_refused(rule_files, capsys):
    _, catalogue, messages = rule_files
    replace_in(catalogue, "Add a checked bag[ to {flight}] for 30 euros", "Add a checked bag[ to {flight} for 30 euros")
    replace_in(messages, "  extra_bag: [bags_per_trip]", "  extra_bag: [bags_per_flight]")
    assert check(rule_files) == 1
    err = capsys.readouterr().err
    assert "action 'extra_bag': messages.en.screen: a '[' without its ']'" in err
    assert "messages.yaml: explained_by.extra_bag: bags_per_flight is not a feature" in err


def test_a_why_for_an_action_the_catalogue_lacks_is_named_though_a_service_would_load_it(
    rule_files, demo_model_dir, capsys
):
    """A deployment may serve part of the catalogue with the whole messages file, so loading lets it pass; the
    check names it, since a misspelt action id leaves its action with the generic why."""
    policies, catalogue, messages = rule_files
    replace_in(messages, "  extra_bag: [bags_per_trip]", "  extra_bag: [bags_per_trip]\n  gift_card: [tier]")
    schema = FeatureSchema.load(SETTINGS.schema_path)
    load_strategy(RuleFiles(policies, catalogue, messages), schema, LightGBMScorer(demo_model_dir, schema))
    assert check(rule_files) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "messages.yaml: explained_by: gift_card is not an action of actions.yaml",
        "nba rules check: 1 problem(s) in the texts",
    ]
