from __future__ import annotations

import math
from pathlib import Path

import pytest

from features.schema import FeatureSchema, SchemaError


def test_typed_values_from_stored_text() -> None:
    schema = FeatureSchema.load()
    now = 1_000_000_000.0
    values = schema.parse(
        {
            "tier": "gold",
            "predicted_ltv": "1234.5",
            "age": "41",
            "in_arrears": "1",
            "last_incident": repr(now - 10 * 86_400),
            "first_language": "klingon",
            "tenure_years": "nan",
        },
        now,
    )
    assert values["tier"] == "gold" and values["predicted_ltv"] == 1234.5 and values["age"] == 41
    assert values["in_arrears"] is True
    assert values["last_incident_days"] == pytest.approx(10.0)
    assert values["first_language"] == "en"  # not an accepted value: the default
    assert values["tenure_years"] == 0  # not finite: the default
    assert values["domain"] == "airline"  # absent: the default


def test_model_row_encodes_categories_booleans_and_missing_timestamps() -> None:
    schema = FeatureSchema.load()
    row = schema.model_row(schema.defaults() | {"tier": "platinum", "has_credit_card": True})
    names = schema.model_feature_names
    assert len(row) == len(names)
    assert row[names.index("tier")] == 3.0
    assert row[names.index("has_credit_card")] == 1.0
    assert math.isnan(row[names.index("last_incident_days")])
    assert "first_name" not in names and "open_problem" not in names  # text never reaches the model


def test_a_bad_schema_names_the_feature(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text("features:\n  tier: {type: category, values: [a, b], default: c}\n")
    with pytest.raises(SchemaError, match="feature 'tier': default 'c' is not among its values"):
        FeatureSchema.load(path)
    path.write_text("features:\n  age: {type: years}\n")
    with pytest.raises(SchemaError, match="feature 'age': type 'years' is not one of"):
        FeatureSchema.load(path)
