"""The demo model: the artifact is consistent, training is reproducible, and it recovers the ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from decision.catalogue import Catalogue
from features.schema import FeatureSchema
from training.demo_model import auc, load_or_train_demo_model, model_rows, train_demo_model
from training.population import generate_population, simulate_responses

FRESH_NOW = 1_805_000_000.0  # not the training clock: the model must only depend on ages


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The real demo model (10,000 customers): about 5 s on one thread.
    return train_demo_model(tmp_path_factory.mktemp("demo-model"))


@pytest.fixture(scope="module")
def metadata(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fresh():
    """Customers the model never saw, each shown every action, with the ground truth of each response."""
    schema, catalogue = FeatureSchema.load(), Catalogue.load()
    population = generate_population(3000, seed=1234, now=FRESH_NOW)
    log = simulate_responses(
        population, len(catalogue.action_ids), seed=99, now=FRESH_NOW, schema=schema, catalogue=catalogue
    )
    rows = model_rows(population, log, FRESH_NOW, schema, catalogue)
    labels = np.array([entry["accepted"] for entry in log])
    truth = np.array([entry["true_probability"] for entry in log])
    actions = np.array([entry["action_id"] for entry in log])
    return rows, labels, truth, actions


def test_artifact_metadata_matches_the_model_file(model_dir, metadata):
    schema, catalogue = FeatureSchema.load(), Catalogue.load()
    booster = lgb.Booster(model_file=str(model_dir / "model.txt"))
    assert booster.feature_name() == metadata["feature_names"]
    assert metadata["feature_names"] == [*schema.model_feature_names, "action"]
    assert metadata["categorical_features"] == [*schema.categorical_feature_names, "action"]
    assert metadata["actions"] == catalogue.action_ids
    assert metadata["schema_version"] == schema.version
    digest = hashlib.sha256((model_dir / "model.txt").read_bytes()).hexdigest()[:12]
    assert metadata["version"] == f"demo-{digest}"
    assert metadata["rows"] > 0
    assert set(metadata["metrics"]) >= {"auc_valid", "logloss_valid", "true_model_auc_valid"}


def test_recorded_validation_auc_is_close_to_the_true_models(metadata):
    metrics = metadata["metrics"]
    assert metrics["auc_valid"] > 0.8
    assert metrics["auc_valid"] >= metrics["true_model_auc_valid"] - 0.03


def test_model_recovers_the_true_acceptance_probabilities(model_dir, fresh):
    rows, labels, truth, actions = fresh
    predicted = lgb.Booster(model_file=str(model_dir / "model.txt")).predict(rows, num_threads=1)
    assert np.corrcoef(predicted, truth)[0, 1] > 0.9
    assert np.mean(np.abs(predicted - truth)) < 0.04
    assert auc(labels, predicted) >= auc(labels, truth) - 0.03
    # The overall correlation is helped by differences between actions; within an action whose ground truth
    # varies a lot between customers, the model must also rank customers the right way round.
    for action_id in ("lounge_pass", "extra_bag", "premium_card_upgrade"):
        mine = actions == action_id
        assert np.corrcoef(predicted[mine], truth[mine])[0, 1] > 0.7, action_id


def test_same_seed_trains_the_same_model(tmp_path):
    first = train_demo_model(tmp_path / "first", n_customers=1500, num_boost_round=30)
    second = train_demo_model(tmp_path / "second", n_customers=1500, num_boost_round=30)
    assert (first / "model.txt").read_bytes() == (second / "model.txt").read_bytes()


def test_load_or_train_reuses_a_current_model_and_retrains_a_stale_one(tmp_path):
    model_dir = tmp_path / "model"
    load_or_train_demo_model(model_dir, n_customers=1000, num_boost_round=20)
    metadata_path = model_dir / "model.json"
    first = json.loads(metadata_path.read_text(encoding="utf-8"))

    # A current model is reused as it is: retraining would replace the files (a new inode), not rewrite them.
    before = metadata_path.stat()
    load_or_train_demo_model(model_dir, n_customers=1000, num_boost_round=20)
    after = metadata_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # A model made for another schema is replaced.
    stale = first | {"schema_version": "not-this-schema", "trained_at": "2000-01-01T00:00:00+00:00"}
    metadata_path.write_text(json.dumps(stale), encoding="utf-8")
    load_or_train_demo_model(model_dir, n_customers=1000, num_boost_round=20)
    retrained = json.loads(metadata_path.read_text(encoding="utf-8"))
    assert retrained["schema_version"] == FeatureSchema.load().version
    assert retrained["trained_at"] != stale["trained_at"]

    # So is one whose model.txt no longer matches the version it was published under.
    (model_dir / "model.txt").write_text("tree\n", encoding="utf-8")
    load_or_train_demo_model(model_dir, n_customers=1000, num_boost_round=20)
    lgb.Booster(model_file=str(model_dir / "model.txt"))  # loads: a real model again


def test_auc_counts_ties_half_and_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300), 1)  # many ties
    positives, negatives = scores[labels], scores[~labels]
    pairwise = np.mean((positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :]))
    assert auc(labels, scores) == pytest.approx(pairwise)
