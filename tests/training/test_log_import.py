"""The log importer: the service's features as the service reads them, anyone's CSV/Parquet, and refusals that say
which column and which rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from decision.catalogue import Catalogue
from features.schema import FeatureSchema
from training.demo_log import offerable_actions, simulate_decision_log
from training.log_import import LogColumns, LogError, import_log, write_table

DEMO = LogColumns(action="action", outcome="accepted", propensity="propensity")
SCHEMA = FeatureSchema.load()


@pytest.fixture(scope="module")
def demo_table() -> pa.Table:
    return simulate_decision_log(300, 1, seed=3, schema=FeatureSchema.load(), catalogue=Catalogue.load())


@pytest.fixture(scope="module")
def catalogue_actions() -> list[str]:
    return Catalogue.load().action_ids


def small_log(tmp_path: Path, name: str = "log.csv", **columns: list) -> Path:
    return write_table(pa.table(columns), tmp_path / name)


def test_demo_log_reads_with_the_services_own_encoding(demo_table, catalogue_actions):
    schema = FeatureSchema.load()
    log = import_log(demo_table, DEMO, SCHEMA, catalogue_actions=catalogue_actions)
    assert log.encoding.mode == "schema" and log.encoding.servable
    assert log.columns.time == "decided_at"
    assert list(log.columns.features or ()) == schema.model_feature_names
    # Row by row, the same numbers the serving path makes from the same typed values.
    for i in (0, 7, 150):
        row = demo_table.slice(i, 1).to_pylist()[0]
        values = {f.derived_name: row[f.derived_name] for f in schema.features}
        np.testing.assert_array_equal(log.features[i], schema.model_row(values))
    assert set(log.action_ids) <= set(offerable_actions(Catalogue.load()))


def test_csv_and_parquet_of_one_log_are_the_same_log(tmp_path, demo_table, catalogue_actions):
    from_csv = import_log(
        write_table(demo_table, tmp_path / "log.csv"), DEMO, SCHEMA, catalogue_actions=catalogue_actions
    )
    from_parquet = import_log(
        write_table(demo_table, tmp_path / "log.parquet"), DEMO, SCHEMA, catalogue_actions=catalogue_actions
    )
    assert from_csv.fingerprint == from_parquet.fingerprint
    np.testing.assert_array_equal(from_csv.features, from_parquet.features)
    changed = demo_table.set_column(
        demo_table.schema.get_field_index("accepted"),
        "accepted",
        pa.array([1 - v for v in demo_table.column("accepted").to_pylist()]),
    )
    assert import_log(changed, DEMO, SCHEMA).fingerprint != from_csv.fingerprint


def test_categorical_text_and_missing_values_need_no_hand_editing(tmp_path):
    path = small_log(
        tmp_path,
        tier=["gold", None, "silver", "gold", "", "bronze"],
        spend=[10.5, None, 3.0, 7.25, 0.0, 1.0],
        offer=["a", "b", "a", "b", "a", "b"],
        bought=[1, 0, 0, 1, 0, 1],
    )
    log = import_log(path, LogColumns(action="offer", outcome="bought"), SCHEMA)
    assert log.encoding.mode == "log" and not log.encoding.servable
    tier, spend = log.encoding.columns
    assert (tier.kind, tier.categories) == ("category", ("bronze", "gold", "silver"))
    assert spend.kind == "number"
    codes = log.features[:, 0]
    assert codes[0] == codes[3] == 1.0 and codes[2] == 2.0 and codes[5] == 0.0
    assert math.isnan(codes[1]) and math.isnan(codes[4])  # a missing and an empty cell: missing, not a category
    assert math.isnan(log.features[1, 1]) and log.features[0, 1] == 10.5
    assert log.propensities is None
    assert any("no propensity" in note for note in log.notes)


def test_a_single_action_log_is_accepted_with_a_note(tmp_path):
    path = small_log(tmp_path, age=[30, 40, 50], offer=["loan", "loan", "loan"], took=[0, 1, 0])
    log = import_log(path, LogColumns(action="offer", outcome="took"), SCHEMA)
    assert log.action_ids == ["loan"]
    assert any("one action only" in note for note in log.notes)


def test_outcomes_may_be_words_or_values(tmp_path):
    words = small_log(tmp_path, "w.csv", x=[1, 2, 3], a=["p", "q", "p"], o=["ACCEPTED", "declined", "Ignored"])
    log = import_log(words, LogColumns(action="a", outcome="o"), SCHEMA)
    assert log.outcomes.tolist() == [1.0, 0.0, 0.0] and log.outcome_kind == "binary"
    spend = small_log(tmp_path, "s.csv", x=[1, 2, 3], a=["p", "q", "p"], o=[0.0, 12.5, 80.0])
    assert import_log(spend, LogColumns(action="a", outcome="o"), SCHEMA).outcome_kind == "value"


def test_identifiers_and_unnamed_index_columns_are_not_features(tmp_path):
    n = 60
    path = small_log(
        tmp_path,
        **{
            "": list(range(n)),
            "customer_id": [f"c{i}" for i in range(n)],
            "session": [f"s{i}" for i in range(n)],
            "age": list(range(n)),
            "a": ["x", "y"] * (n // 2),
            "o": [0, 1] * (n // 2),
        },
    )
    log = import_log(path, LogColumns(action="a", outcome="o"), SCHEMA)
    assert [c.name for c in log.encoding.columns] == ["age"]
    assert any("'session'" in note and "identifier" in note for note in log.notes)


def test_no_outcome_column_is_refused_naming_it(tmp_path):
    path = small_log(tmp_path, x=[1, 2], a=["p", "q"])
    with pytest.raises(LogError, match=r"outcome column 'accepted' is missing; columns found: 'x', 'a'"):
        import_log(path, LogColumns(action="a", outcome="accepted"), SCHEMA)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2])
def test_propensities_outside_zero_one_are_refused_naming_the_rows(tmp_path, bad):
    propensity = [0.5] * 50
    propensity[2] = propensity[16] = propensity[40] = bad
    path = small_log(tmp_path, x=list(range(50)), a=["p", "q"] * 25, o=[0, 1] * 25, pr=propensity)
    with pytest.raises(LogError, match=r"^pr: rows 3, 17, 41 \(3 rows\) outside \(0, 1\]$"):
        import_log(path, LogColumns(action="a", outcome="o", propensity="pr"), SCHEMA)


def test_a_propensity_of_one_is_accepted(tmp_path):
    path = small_log(tmp_path, x=[1, 2], a=["p", "q"], o=[0, 1], pr=[1.0, 0.5])
    log = import_log(path, LogColumns(action="a", outcome="o", propensity="pr"), SCHEMA)
    assert log.propensities.tolist() == [1.0, 0.5]


def test_missing_propensities_and_outcomes_are_refused_naming_the_rows(tmp_path):
    path = small_log(tmp_path, x=[1, 2, 3], a=["p", "q", "p"], o=[0, None, 1], pr=[0.5, 0.5, None])
    with pytest.raises(LogError, match=r"^o: row 2 \(1 row\) have no outcome$"):
        import_log(path, LogColumns(action="a", outcome="o"), SCHEMA)
    with pytest.raises(LogError, match=r"^pr: row 3 \(1 row\) have no propensity$"):
        import_log(path, LogColumns(action="a", outcome="x", propensity="pr"), SCHEMA)


def test_unreadable_outcomes_are_refused_naming_rows_and_values(tmp_path):
    path = small_log(tmp_path, x=[1, 2, 3], a=["p", "q", "p"], o=["1", "maybe", "0"])
    with pytest.raises(LogError, match=r"^o: row 2 \(1 row\) are neither a number .*'maybe'"):
        import_log(path, LogColumns(action="a", outcome="o"), SCHEMA)


def test_unknown_action_ids_are_refused_naming_ids_and_rows(tmp_path, demo_table, catalogue_actions):
    actions = demo_table.column("action").to_pylist()
    actions[4] = actions[9] = "free_puppy"
    actions[20] = "moon_trip"
    table = demo_table.set_column(demo_table.schema.get_field_index("action"), "action", pa.array(actions))
    with pytest.raises(LogError) as refused:
        import_log(table, DEMO, SCHEMA, catalogue_actions=catalogue_actions)
    message = str(refused.value)
    assert message.startswith("action: unknown action ids 'free_puppy' (rows 5, 10 (2 rows)); 'moon_trip' (row 21")
    assert "'lounge_pass'" in message  # the accepted ones are listed
    # Against a trained model's own actions too.
    with pytest.raises(LogError, match="unknown action ids 'free_puppy'"):
        import_log(table, DEMO, SCHEMA, known_actions=catalogue_actions)


def test_empty_actions_and_missing_feature_columns_are_refused(tmp_path):
    path = small_log(tmp_path, x=[1, 2, 3], a=["p", None, "q"], o=[0, 1, 0])
    with pytest.raises(LogError, match=r"^a: row 2 \(1 row\) have no action$"):
        import_log(path, LogColumns(action="a", outcome="o"), SCHEMA)
    path = small_log(tmp_path, "b.csv", x=[1, 2, 3], a=["p", "r", "q"], o=[0, 1, 0])
    with pytest.raises(LogError, match=r"feature columns 'y' are missing"):
        import_log(path, LogColumns(action="a", outcome="o", features=("x", "y")), SCHEMA)


def test_unsupported_files_are_refused(tmp_path):
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(LogError, match="unsupported file type '.json'"):
        import_log(tmp_path / "log.json", DEMO, SCHEMA)
    with pytest.raises(LogError, match="no such file"):
        import_log(tmp_path / "absent.csv", DEMO, SCHEMA)
