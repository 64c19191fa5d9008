"""The demo model: a LightGBM acceptance model trained on the demo population's simulated history.

One row per (customer, action) shown: the schema's model row followed by the action's index in the catalogue
(a categorical column), labelled with whether the customer accepted. The artifact is two files in one
directory: ``model.txt`` (LightGBM's text format, what the scorer loads) and ``model.json`` (its card,
``decision/models/card.py``: feature order, actions, schema version, and the quality measured at training).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from decision.catalogue import Catalogue
from decision.models import ACTION_FEATURE, CARD_FILE, MODEL_FILE, ModelCard, ModelError, Registry
from features.schema import FeatureSchema
from training.lightgbm_params import lightgbm_params
from training.population import demo_definitions, generate_population, simulate_responses

DEMO_VERSION_PREFIX = "demo-"  # a demo model's version id: the prefix and its model.txt's hash

ACTIONS_PER_CUSTOMER = 4
VALID_SHARE = 0.2
EARLY_STOPPING_ROUNDS = 20

# The model only ever sees ages (days since an incident), never clock times, so training against a fixed clock
# changes nothing it learns and makes the same seed give a byte-identical model.txt (and version) anywhere.
REFERENCE_NOW = 1_790_000_000.0


def demo_params(seed: int) -> dict[str, Any]:
    """The demo model's training parameters (also recorded in its card): the shared set, with larger leaves for
    the demo population's noisy simulated responses."""
    return lightgbm_params("binary", seed, {"min_data_in_leaf": 40})


def model_rows(
    population: Sequence[Mapping[str, str]],
    log: Sequence[Mapping[str, Any]],
    now: float,
    schema: FeatureSchema,
    catalogue: Catalogue,
) -> np.ndarray:
    """The model's input for each logged (customer, action): the schema's model row, then the action index.

    Columns are ``schema.model_feature_names + ["action"]``, the order the serving path must use too.
    """
    action_index = {action_id: float(i) for i, action_id in enumerate(catalogue.action_ids)}
    customer_rows = {raw["customer_id"]: schema.model_row(schema.parse(raw, now)) for raw in population}
    rows = np.empty((len(log), len(schema.model_features) + 1), dtype=np.float64)
    for i, entry in enumerate(log):
        rows[i, :-1] = customer_rows[entry["customer_id"]]
        rows[i, -1] = action_index[entry["action_id"]]
    return rows


def train_demo_model(
    out_dir: Path,
    n_customers: int = 10_000,
    seed: int = 7,
    num_boost_round: int = 200,
) -> Path:
    """Train the demo acceptance model and write ``model.txt`` and ``model.json`` into ``out_dir``.

    The population (``n_customers`` plus the personas) and its simulated history come from
    ``training.population``. Customers, not rows, are split 80/20 so no customer is on both sides; the 20%
    chooses the stopping round (at most ``num_boost_round``) and gives the recorded metrics, next to the
    true model's AUC on the same rows (the best any model could do). The same seed gives the same model.txt.
    Returns ``out_dir``.
    """
    started = time.perf_counter()
    schema, catalogue = demo_definitions()
    population = generate_population(n_customers, seed=seed, now=REFERENCE_NOW)
    log = simulate_responses(
        population, ACTIONS_PER_CUSTOMER, seed=seed + 1, now=REFERENCE_NOW, schema=schema, catalogue=catalogue
    )
    rows = model_rows(population, log, REFERENCE_NOW, schema, catalogue)
    labels = np.array([entry["accepted"] for entry in log], dtype=np.float64)
    true_probability = np.array([entry["true_probability"] for entry in log], dtype=np.float64)

    rng = np.random.default_rng(seed + 2)
    valid_customers = {raw["customer_id"] for raw in population if rng.random() < VALID_SHARE}
    is_valid = np.array([entry["customer_id"] in valid_customers for entry in log])

    feature_names = [*schema.model_feature_names, ACTION_FEATURE]
    categorical = [*schema.categorical_feature_names, ACTION_FEATURE]
    params = demo_params(seed)
    train_set = lgb.Dataset(
        rows[~is_valid], labels[~is_valid], feature_name=feature_names, categorical_feature=categorical
    )
    valid_set = train_set.create_valid(rows[is_valid], labels[is_valid])
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
    )

    predicted = booster.predict(rows[is_valid], num_iteration=booster.best_iteration, num_threads=1)
    metrics = {
        "auc_valid": auc(labels[is_valid], predicted),
        "logloss_valid": logloss(labels[is_valid], predicted),
        "true_model_auc_valid": auc(labels[is_valid], true_probability[is_valid]),
        "true_model_logloss_valid": logloss(labels[is_valid], true_probability[is_valid]),
        "best_iteration": int(booster.best_iteration),
        "train_seconds": round(time.perf_counter() - started, 3),
    }

    model_text = booster.model_to_string(num_iteration=booster.best_iteration)
    card = ModelCard(
        version=_demo_version(model_text.encode()),
        feature_names=feature_names,
        categorical_features=categorical,
        actions=catalogue.action_ids,
        schema_version=schema.version,
        catalogue_version=catalogue.version,
        trained_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        metrics=metrics,
        details={
            "rows": len(log),
            "customers": len(population),
            "params": {
                **params,
                "num_boost_round": num_boost_round,
                "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
                "actions_per_customer": ACTIONS_PER_CUSTOMER,
                "valid_share": VALID_SHARE,
            },
        },
    )
    # The card goes last: a reader that finds it finds a complete model.txt whose hash it names.
    return card.write(Path(out_dir), model_text)


def load_or_train_demo_model(model_dir: Path, **train_options: Any) -> Path:
    """The demo model in ``model_dir``, trained first unless one made for this schema and catalogue is there.

    An existing model is reused when its card's ``schema_version`` and ``actions`` match the current schema
    and catalogue and model.txt still hashes to its ``version``; otherwise it is retrained with
    ``train_options`` (passed to ``train_demo_model``). Returns ``model_dir``.
    """
    model_dir = Path(model_dir)
    if _is_current(model_dir, *demo_definitions()):
        return model_dir
    return train_demo_model(model_dir, **train_options)


def register_demo_model(model_dir: Path, registry_root: Path, *, make_live: bool = False) -> str:
    """The demo model as a version of the registry (its card's version id, added once), so that publishing a model
    of one's own and then ``nba rollback`` returns to it as to any version. Made live when nothing is published,
    when what serves is an earlier demo model (retrained for a changed schema or catalogue), or ``make_live``
    (``nba demo --reset``). Returns its version id."""
    model_dir = Path(model_dir)
    version = ModelCard.read(model_dir).version
    registry = Registry(Path(registry_root))
    if version not in {entry["version"] for entry in registry.versions()}:
        files = {name: (model_dir / name).read_text(encoding="utf-8") for name in (MODEL_FILE, CARD_FILE)}
        registry.add(version, files)
    live = registry.live()
    earlier_demo = live is not None and live.champion.startswith(DEMO_VERSION_PREFIX) and live.champion != version
    if live is None or earlier_demo or (make_live and (live.champion, live.challenger) != (version, None)):
        registry.publish(version, note="the demo model (nba demo)")
    return version


def _is_current(model_dir: Path, schema: FeatureSchema, catalogue: Catalogue) -> bool:
    try:
        card = ModelCard.read(model_dir)
        model_bytes = (model_dir / MODEL_FILE).read_bytes()
    except (OSError, ValueError, ModelError):
        return False
    return (
        card.schema_version == schema.version
        and card.actions == catalogue.action_ids
        and card.version == _demo_version(model_bytes)
    )


def _demo_version(model_text: bytes) -> str:
    # Named by its bytes: the same seed gives the same version anywhere, and a changed model.txt is seen.
    return DEMO_VERSION_PREFIX + hashlib.sha256(model_text).hexdigest()[:12]


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN when only one class is present."""
    positive = np.asarray(labels, dtype=bool)
    score = np.asarray(scores, dtype=np.float64)
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(score, kind="mergesort")
    # Every run of equal scores shares its average (1-based) rank, so ties count half.
    _, first, counts = np.unique(score[order], return_index=True, return_counts=True)
    ranks = np.empty(len(score), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[positive].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def logloss(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean binary cross-entropy, probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-15, 1 - 1e-15)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
