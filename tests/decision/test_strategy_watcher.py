"""Rule deployments go live only whole: a file caught half-written, a change made while it is read, a directory
swapped by a symbolic link; a bad catalogue is refused with its file and field named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from decision.catalogue import DEFAULT_CATALOGUE_PATH, Catalogue, CatalogueError
from decision.explanation import TemplateError
from decision.scoring import LightGBMScorer
from decision.strategy import RuleFiles, Strategy, StrategyWatcher, load_strategy
from features.schema import FeatureSchema
from rules.engine import DEFAULT_POLICY_DIR

SCHEMA = FeatureSchema.load()
MESSAGES = DEFAULT_POLICY_DIR.parent / "messages.yaml"
RECOVERY = "service_recovery.yaml"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _copy_rules(root: Path, name: str = "policies") -> RuleFiles:
    shutil.copytree(DEFAULT_POLICY_DIR, root / name)
    if not (root / "actions.yaml").exists():
        shutil.copy(DEFAULT_CATALOGUE_PATH, root / "actions.yaml")
        shutil.copy(MESSAGES, root / "messages.yaml")
    return RuleFiles(root / name, root / "actions.yaml", root / "messages.yaml")


@pytest.fixture()
def watched(tmp_path: Path, demo_model_dir: Path):
    files = _copy_rules(tmp_path)
    live: list[Strategy] = [load_strategy(files, SCHEMA, LightGBMScorer(demo_model_dir, SCHEMA))]
    clock = Clock()
    watcher = StrategyWatcher(files, SCHEMA, lambda: live[-1], live.append, interval_s=0, settle_s=1.0, clock=clock)
    return files, live, watcher, clock


def _rule_ids(strategy: Strategy) -> set[str]:
    return set(strategy.rules.rule_ids)


def test_a_rule_file_caught_half_written_never_goes_live(watched) -> None:
    files, live, watcher, clock = watched
    path = Path(files.policy_dir) / RECOVERY
    whole = path.read_text("utf-8")
    # Cut where it still parses and compiles: the complaint rules are missing, nothing says so.
    half = whole[: whole.index("  - id: complaint_recovery\n")]
    path.write_text(half, "utf-8")
    assert not watcher.check_rules()  # seen, not settled
    clock.now += 0.5
    path.write_text(whole.replace("Service recovery", "Service recovery (v2)", 1), "utf-8")
    assert not watcher.check_rules()  # changed again: the wait starts over
    clock.now += 0.9
    assert not watcher.check_rules()
    assert len(live) == 1
    clock.now += 0.2
    assert watcher.check_rules()
    assert len(live) == 2 and {"complaint_recovery", "complaint_recovery_valuable"} <= _rule_ids(live[-1])


def test_without_a_settle_time_the_half_written_file_would_have_gone_live(watched) -> None:
    """The same half file the test above keeps out does compile: the settle time is what keeps it out."""
    files, live, watcher, clock = watched
    path = Path(files.policy_dir) / RECOVERY
    whole = path.read_text("utf-8")
    path.write_text(whole[: whole.index("  - id: complaint_recovery\n")], "utf-8")
    watcher.settle_s = 0.0
    assert watcher.check_rules()
    assert "complaint_recovery" not in _rule_ids(live[-1])


def test_a_change_made_while_the_files_are_read_is_read_again(watched, monkeypatch: pytest.MonkeyPatch) -> None:
    files, live, watcher, clock = watched
    path = Path(files.policy_dir) / RECOVERY
    path.write_text(path.read_text("utf-8").replace("Service recovery", "Service recovery (v2)", 1), "utf-8")
    assert not watcher.check_rules()
    clock.now += 2.0

    import decision.strategy as strategy_module

    real_load = strategy_module.load_strategy

    def load_while_a_file_changes(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        with (Path(files.policy_dir) / "care.yaml").open("a", encoding="utf-8") as care:
            care.write("# touched during the read\n")
        return loaded

    monkeypatch.setattr(strategy_module, "load_strategy", load_while_a_file_changes)
    assert not watcher.check_rules()
    assert len(live) == 1
    monkeypatch.setattr(strategy_module, "load_strategy", real_load)
    clock.now += 2.0
    assert not watcher.check_rules()  # the second change is new: it settles first
    clock.now += 2.0
    assert watcher.check_rules()
    assert len(live) == 2


def test_a_policy_directory_swapped_by_a_symbolic_link_goes_live(tmp_path: Path, demo_model_dir: Path) -> None:
    first = _copy_rules(tmp_path, "release-1")
    second = _copy_rules(tmp_path, "release-2")
    (Path(second.policy_dir) / "care.yaml").unlink()
    current = tmp_path / "current"
    current.symlink_to(first.policy_dir)
    files = RuleFiles(current, first.catalogue_path, first.messages_path)
    live = [load_strategy(files, SCHEMA, LightGBMScorer(demo_model_dir, SCHEMA))]
    clock = Clock()
    watcher = StrategyWatcher(files, SCHEMA, lambda: live[-1], live.append, interval_s=0, settle_s=1.0, clock=clock)
    swap = tmp_path / "current.new"
    swap.symlink_to(second.policy_dir)
    swap.replace(current)  # rename(2): the link points at the new release at once
    assert not watcher.check_rules()
    clock.now += 1.5
    assert watcher.check_rules()
    assert live[-1].rules_version != live[0].rules_version
    care = {"card_renewal_reminder"}
    assert care <= _rule_ids(live[0]) and not care & _rule_ids(live[-1])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # cut short inside a quoted text, as a copy stopped half-way leaves it
        (lambda text: text[: text.index('agent: "') + 12], "actions.yaml: not valid YAML: "),
        (
            lambda text: text.replace("capacity: {per: flight, units: 2}", "capacity: {per: flight, units: 2", 1),
            "actions.yaml: not valid YAML: expected ',' or '}', but got ':' at line",
        ),
        (
            lambda text: text.replace("units: 2", "units: two", 1),
            "actions.yaml: action 'upgrade_first_class': capacity needs 'per' (a context key) and 'units'",
        ),
        (
            lambda text: text.replace("units: 2", "units: -1", 1),
            "actions.yaml: action 'upgrade_first_class': capacity.units must be a whole number >= 0, got -1",
        ),
        (
            lambda text: text.replace("  upgrade_first_class:", "  upgrade first class:", 1),
            "actions.yaml: action 'upgrade first class': an action id is 1-64 letters, digits, '_', '.' or '-'",
        ),
        (
            lambda text: text.replace("default_max_actions: 3", "default_max_actions: lots", 1),
            "actions.yaml: default_max_actions must be a whole number 1-20, got 'lots'",
        ),
        (
            lambda text: text.replace("currency: EUR", "currency: 12", 1),
            "actions.yaml: currency must be a three-letter code (EUR), got 12",
        ),
    ],
)
def test_a_bad_catalogue_names_its_file_and_field(tmp_path: Path, change, expected: str) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text(change(DEFAULT_CATALOGUE_PATH.read_text("utf-8")), "utf-8")
    with pytest.raises(CatalogueError) as refused:
        Catalogue.load(path)
    assert str(refused.value).startswith(expected)
    assert str(tmp_path) not in str(refused.value)  # the file's name, not this machine's path


def test_a_text_with_a_misspelt_placeholder_is_refused_and_the_strategy_keeps_serving(watched, caplog) -> None:
    """A text that would render a blank is refused like a rule that does not compile, on a reload as at start."""
    files, live, watcher, clock = watched
    catalogue = Path(files.catalogue_path)
    text = catalogue.read_text("utf-8")
    assert text.count("[ al volo {flight}]") == 1
    catalogue.write_text(text.replace("[ al volo {flight}]", "[ al volo {fligth}]"), "utf-8")
    watcher.settle_s = 0.0
    assert not watcher.check_rules()
    assert len(live) == 1, "the strategy serving before stays"
    assert "{fligth} is not a field a text can show" in caplog.text
    with pytest.raises(TemplateError) as refused:
        load_strategy(files, SCHEMA, live[0].models)
    assert refused.value.problems == [p for p in refused.value.problems if "actions.yaml: action 'extra_bag'" in p]


def test_a_messages_text_naming_a_feature_the_schema_lacks_is_warned_about_and_goes_live(watched, caplog) -> None:
    """The messages file may serve a smaller schema, where a feature it lacks shows as nothing: warned about (and
    ``nba rules check`` fails on it), not refused."""
    files, live, watcher, clock = watched
    messages = Path(files.messages_path)
    text = messages.read_text("utf-8")
    assert text.count("{tier}會員，已是我們") == 1
    messages.write_text(text.replace("{tier}會員，已是我們", "{teir}會員，已是我們"), "utf-8")
    watcher.settle_s = 0.0
    assert watcher.check_rules()
    assert len(live) == 2
    assert "reasons.loyal_member.zh-Hant: {teir} is not a field a text can show" in caplog.text
