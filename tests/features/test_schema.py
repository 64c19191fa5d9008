from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


STORED = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "1", "0", "yes", "No ", "t", "gold", "klingon", "-3.5"]),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
)


SCHEMA = FeatureSchema.load()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_parse_and_model_row_equal_each_feature_on_its_own(data: st.DataObject) -> None:
    """The schema's whole-profile parse and model row give exactly what each feature's own parse and encode do."""
    schema = SCHEMA
    names = [f.name for f in schema.features]
    raw = data.draw(st.dictionaries(st.sampled_from(names), STORED))
    now = 1_000_000_000.0
    try:
        expected = {f.derived_name: f.parse(raw.get(f.name), now) for f in schema.features}
    except OverflowError:  # an integer feature of "inf": refused the same way by both
        with pytest.raises(OverflowError):
            schema.parse(raw, now)
        return
    values = schema.parse(raw, now)
    assert list(values) == list(expected)
    for name, value in expected.items():
        assert type(values[name]) is type(value) and (values[name] == value or value != value), name
    row = schema.model_row(values)
    assert np.array_equal(
        row, np.array([f.encode(values.get(f.derived_name)) for f in schema.model_features]), equal_nan=True
    )
