"""``nba simulate``: the live decision flow over a demo population, and a candidate strategy's difference.

The population is the demo one (personas first) at today's touchpoints, plus clones of the S1 persona on one
flight so that its upgrade seats run out. Every check compares the simulator with what the decisions themselves
say (rules fired, first actions, suppressions), never with numbers written down in advance.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from decision.catalogue import DEFAULT_CATALOGUE_PATH, Catalogue
from decision.cli import main
from decision.domain import Decision
from decision.models import Registry
from decision.settings import Settings
from features.bulk_load import read_table
from training import loop
from training.log_import import write_table
from training.population import DEMO_IFE_GOLD, at_touchpoints, generate_population
from training.simulate import NO_POOL, SimulationError, SimulationReport

CUSTOMERS = 250
NOW = 1_796_000_000.0
CROWDED_FLIGHT = "AZ990"
CLONES = 5  # S1 passengers on the crowded flight: more than its upgrade seats


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulate")


@pytest.fixture(scope="module")
def population(workdir: Path) -> Path:
    rows = at_touchpoints(generate_population(CUSTOMERS, seed=3, now=NOW), seed=3)
    persona = next(r for r in rows if r["customer_id"] == DEMO_IFE_GOLD)
    rows += [
        {**persona, "customer_id": f"s1-clone-{i}", "touchpoint": "CHECKIN_AGENT", "flight": CROWDED_FLIGHT}
        for i in range(CLONES)
    ]
    return write_table(pa.Table.from_pylist(rows), workdir / "population.csv")


@pytest.fixture(scope="module")
def without_service_recovery(workdir: Path) -> Path:
    """A copy of the live policies without the service-recovery rule file."""
    policies = workdir / "policies-no-recovery"
    shutil.copytree(Settings().policy_dir, policies)
    (policies / "service_recovery.yaml").unlink()
    return policies


@pytest.fixture(scope="module")
def rule_change(population: Path, without_service_recovery: Path, demo_model_dir: Path) -> SimulationReport:
    return loop.simulate(population, rules=without_service_recovery, live_model=demo_model_dir, now=NOW)


def service_recovery_rule_ids() -> set[str]:
    document = yaml.safe_load((Settings().policy_dir / "service_recovery.yaml").read_text(encoding="utf-8"))
    return {rule["id"] for rule in document["rules"]}


def test_a_removed_rule_changes_exactly_the_decisions_it_took_part_in(rule_change: SimulationReport) -> None:
    recovery = service_recovery_rule_ids()
    live, candidate = rule_change.live_decisions, rule_change.candidate_decisions
    assert len(live) == len(candidate) == CUSTOMERS + 3 + CLONES
    fired = {d.customer_id for d in live if {r.rule_id for r in d.explanation.rules_fired} & recovery}
    # The upgrade is given only when a rule requires it: without the rule, every upgraded passenger changes.
    upgraded = {d.customer_id for d in live if _first(d) == "upgrade_first_class"}
    changed = set(rule_change.summary()["difference"]["changed_customers"])
    assert DEMO_IFE_GOLD in upgraded
    assert upgraded <= changed <= fired
    # The decisions the diff names are exactly those whose first action differs.
    assert changed == {a.customer_id for a, b in zip(live, candidate, strict=True) if _first(a) != _first(b)}
    # What the rules required is at most a model-ranked offer now (bonus points may still come first on merit).
    assert not any(a.mandatory for d in candidate for a in d.actions)
    assert all(_first(b) != "upgrade_first_class" for b in candidate)

    difference = rule_change.summary()["difference"]
    assert difference["first_action_changed"] == len(changed)
    assert sum(t["count"] for t in difference["transitions"]) <= len(changed)
    assert difference["upgrades_granted"] == -rule_change.live.to_json()["granted_total"]
    assert difference["mandatory_recoveries"] == -rule_change.live.mandatory_recoveries


def test_a_lever_set_to_zero_moves_only_the_customers_who_got_that_action_first(
    population: Path, workdir: Path, demo_model_dir: Path, rule_change: SimulationReport
) -> None:
    document = yaml.safe_load(DEFAULT_CATALOGUE_PATH.read_text(encoding="utf-8"))
    live_first = Counter(_first(d) for d in rule_change.live_decisions if d.actions)
    lever_action = next(a for a, _ in live_first.most_common() if not document["actions"][a].get("mandatory_only"))
    document["actions"][lever_action]["lever"] = 0
    catalogue = workdir / "actions-lever.yaml"
    catalogue.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert Catalogue.load(catalogue).actions[lever_action].lever == 0

    report = loop.simulate(population, catalogue=catalogue, live_model=demo_model_dir, now=NOW)
    pairs = list(zip(report.live_decisions, report.candidate_decisions, strict=True))
    changed = {a.customer_id for a, b in pairs if _first(a) != _first(b)}
    had_it_first = {a.customer_id for a, _ in pairs if _first(a) == lever_action}
    assert changed and changed <= had_it_first
    # Who had it first and kept it had nothing else eligible: a lever of 0 ranks an action below every other.
    kept = [b for a, b in pairs if _first(a) == lever_action and a.customer_id not in changed]
    assert all([x.action_id for x in b.actions] == [lever_action] for b in kept)
    transitions = report.summary()["difference"]["transitions"]
    assert all(t["live"] == lever_action and t["candidate"] != lever_action for t in transitions)
    assert report.summary()["difference"]["first_action_changed"] == len(changed)


def test_upgrades_per_flight_never_exceed_the_catalogues_seats(population: Path, rule_change: SimulationReport) -> None:
    seats = Catalogue.load().actions["upgrade_first_class"].capacity
    assert seats is not None and seats.per == "flight"
    live = rule_change.summary()["live"]
    upgrades = {row["pool"]: row for row in live["capacity"] if row["action"] == "upgrade_first_class"}
    assert all(row["granted"] <= seats.units == row["units"] for row in upgrades.values())
    crowded = upgrades[CROWDED_FLIGHT]
    assert crowded["granted"] == seats.units and crowded["refused"] == CLONES - seats.units
    # The passengers past the seats get the rule's fallback, and the report counts what the decisions hold.
    decided = [d for d in rule_change.live_decisions if d.customer_id.startswith("s1-clone-")]
    assert [_first(d) for d in decided] == ["upgrade_first_class"] * seats.units + ["bonus_points_recovery"] * (
        CLONES - seats.units
    )
    table = read_table(population)
    flights = dict(zip(table.column("customer_id").to_pylist(), table.column("flight").to_pylist(), strict=True))
    granted = Counter(
        flights[d.customer_id] or NO_POOL
        for d in rule_change.live_decisions
        if any(a.action_id == "upgrade_first_class" for a in d.actions)
    )
    assert {pool: row["granted"] for pool, row in upgrades.items() if row["granted"]} == dict(granted)


def test_the_same_run_twice_gives_the_same_report(
    population: Path, without_service_recovery: Path, demo_model_dir: Path, rule_change: SimulationReport
) -> None:
    again = loop.simulate(population, rules=without_service_recovery, live_model=demo_model_dir, now=NOW)
    assert again.summary() == rule_change.summary()
    assert again.text() == rule_change.text()


def test_a_population_missing_a_column_is_refused_naming_the_file_and_column(
    population: Path, workdir: Path, demo_model_dir: Path
) -> None:
    table = read_table(population)
    broken = write_table(table.drop_columns(["tier"]), workdir / "no-tier.csv")
    with pytest.raises(SimulationError, match=r"no-tier\.csv: column\(s\) tier missing"):
        loop.simulate(broken, live_model=demo_model_dir, now=NOW)


def test_a_population_value_of_the_wrong_type_is_refused_naming_file_column_and_rows(
    population: Path, workdir: Path, demo_model_dir: Path
) -> None:
    table = read_table(population)
    ages = table.column("age").to_pylist()
    ages[1] = "forty"
    broken = write_table(
        table.set_column(table.column_names.index("age"), "age", pa.array(ages)), workdir / "a.parquet"
    )
    with pytest.raises(SimulationError, match=r"a\.parquet: column 'age' \(integer\): row 2 \(1 row\) not a number"):
        loop.simulate(broken, live_model=demo_model_dir, now=NOW)

    tiers = table.column("tier").to_pylist()
    tiers[0] = "diamond"
    broken = write_table(table.set_column(table.column_names.index("tier"), "tier", pa.array(tiers)), workdir / "b.csv")
    with pytest.raises(SimulationError, match=r"b\.csv: column 'tier' \(category\): row 1 .* one of none, silver"):
        loop.simulate(broken, live_model=demo_model_dir, now=NOW)


def test_a_bad_candidate_rules_dir_is_refused_naming_the_file_rule_and_field(
    population: Path, workdir: Path, demo_model_dir: Path
) -> None:
    policies = workdir / "policies-bad"
    shutil.copytree(Settings().policy_dir, policies)
    path = policies / "service_recovery.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("field: predicted_ltv,", "field: predicted_ltvv,", 1))
    with pytest.raises(
        SimulationError, match=r"candidate strategy: service_recovery\.yaml: rule '.*': field 'predicted_ltvv'"
    ):
        loop.simulate(population, rules=policies, live_model=demo_model_dir, now=NOW)
    with pytest.raises(SimulationError, match=r"candidate strategy: rules directory .*nowhere: no \*\.yaml"):
        loop.simulate(population, rules=workdir / "nowhere", live_model=demo_model_dir, now=NOW)


def test_the_cli_writes_a_population_prints_its_report_and_writes_the_json(
    workdir: Path, without_service_recovery: Path, demo_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "cli-population.parquet"
    assert main(["demo-population", "--out", str(path), "--customers", "60"]) == 0
    written = read_table(path).to_pylist()
    assert len(written) == 63
    for row in written[3:]:  # after the personas: passengers at the kiosk for a flight, bank customers at the branch
        airline = row["domain"] == "airline"
        assert row["touchpoint"] == ("CHECKIN_KIOSK" if airline else "BRANCH_TELLER")
        assert bool(row["flight"]) == airline
    capsys.readouterr()

    report = workdir / "cli-report.json"
    argv = ["simulate", "--population", str(path), "--live-model", str(demo_model_dir), "--now", str(NOW)]
    code = main([*argv, "--rules", str(without_service_recovery), "--json", str(report), "--limit", "40"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(report.read_text(encoding="utf-8"))
    expected = loop.simulate(path, rules=without_service_recovery, live_model=demo_model_dir, now=NOW, limit=40)
    assert summary == expected.summary() and summary["decisions"] == 40
    assert expected.text() in captured.out
    assert "candidate minus live" in captured.out and "decisions/s" in captured.err

    assert main([*argv, "--touchpoint", "NOWHERE"]) == 2
    assert "nba simulate: --touchpoint: unknown touchpoint 'NOWHERE'" in capsys.readouterr().err


def _first(decision: Decision) -> str:
    return decision.actions[0].action_id if decision.actions else ""


def test_the_live_model_is_the_published_champion_or_the_model_dir_while_nothing_is_published(
    workdir: Path, demo_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = workdir / "registry"
    monkeypatch.setenv("NBA_REGISTRY_DIR", str(registry))
    monkeypatch.setenv("NBA_MODEL_DIR", str(workdir / "unpublished"))
    assert loop.live_strategy().model_dir == workdir / "unpublished"
    shutil.copytree(demo_model_dir, registry / "v-champion")
    Registry(registry).publish("v-champion")
    assert loop.live_strategy().model_dir == registry / "v-champion"
    assert loop.live_strategy(demo_model_dir).model_dir == demo_model_dir
