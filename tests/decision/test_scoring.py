"""The serving path gives exactly LightGBM's own predictions and leaves for the same rows."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from decision.lightgbm_native import NativeBooster
from decision.models import ModelError
from decision.scoring import LightGBMScorer
from features.schema import FeatureSchema
from training.population import generate_population

SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300])
VALUES = st.one_of(SPECIAL, st.floats(-1e6, 1e6, allow_nan=False), st.integers(-3, 20).map(float))


@pytest.fixture(scope="module")
def booster(demo_model_dir: Path) -> lgb.Booster:
    return lgb.Booster(model_file=str(demo_model_dir / "model.txt"))


@pytest.fixture(scope="module")
def native(demo_model_dir: Path) -> NativeBooster:
    return NativeBooster(demo_model_dir / "model.txt")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_native_predictions_equal_lightgbm(booster, native, data) -> None:
    # Up to 8 rows go one by one through the single-row call, more through the matrix call: both are drawn.
    n_rows = data.draw(st.integers(1, 20))
    rows = data.draw(arrays(np.float64, (n_rows, booster.num_feature()), elements=VALUES))
    if data.draw(st.booleans()):
        rows = np.asfortranarray(rows)
    assert np.array_equal(native.predict(rows), booster.predict(rows, num_threads=1))
    assert np.array_equal(native.predict_raw(rows), booster.predict(rows, raw_score=True, num_threads=1))
    assert np.array_equal(native.leaves(rows), booster.predict(rows, pred_leaf=True, num_threads=1))


def test_native_predictions_of_no_rows_are_empty(native) -> None:
    no_rows = np.empty((0, native.num_feature))
    assert native.predict(no_rows).shape == (0,)
    assert native.leaves(no_rows).shape == (0, native.num_trees)


def test_scorer_scores_every_candidate_like_lightgbm(demo_model_dir, booster) -> None:
    schema = FeatureSchema.load()
    scorer = LightGBMScorer(demo_model_dir, schema)
    values = schema.parse(generate_population(5)[0], now=1.8e9)
    actions = ["lounge_pass", "extra_bag", "never_seen_action", "upgrade_first_class"]
    rows = scorer.rows(values, actions)
    assert np.isnan(rows[2, -1])  # an unknown action is a missing category to the model
    assert np.array_equal(scorer.score(values, actions), booster.predict(rows, num_threads=1))
    top = scorer.explain(values, "lounge_pass", 3)
    assert 0 < len(top) <= 3 and all(name != "action" for name, _ in top)


def test_a_model_that_does_not_match_the_schema_is_refused(demo_model_dir, tmp_path) -> None:
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text("features:\n  tier: {type: category, values: [none, gold], default: none}\n")
    with pytest.raises(ModelError, match="does not match the feature schema"):
        LightGBMScorer(demo_model_dir, FeatureSchema.load(schema_file))
