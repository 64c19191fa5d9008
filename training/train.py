"""Training: a LightGBM model of the outcome of (features, action) from a log, stored as a registry version.

The rows are put in time order and split three ways: the oldest rows are fitted, the next ones choose when to
stop adding trees (early stopping), and the newest are held out, unseen, for ``nba evaluate``. Time order, not
a random split: the model is judged on the future it will meet, not on the past it learnt from.

The model's input is the one the service scores (``decision/scoring.py``): the feature columns, then the
action's index in the card's ``actions`` as a categorical ``action`` column. A binary outcome (0/1) trains a
classifier of P(outcome = 1); any other value (spend) a regression of its mean.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from decision.catalogue import Catalogue
from decision.models import ACTION_FEATURE, ModelCard, Registry, VersionExists
from decision.progress import progress
from features.schema import FeatureSchema
from training.demo_model import auc, logloss
from training.lightgbm_params import lightgbm_params
from training.log_import import ImportedLog, LogError

MIN_ROWS = 30


@dataclass(frozen=True)
class TrainingOptions:
    """How a log is split and how long LightGBM may train; recorded in the model card."""

    early_stopping_share: float = 0.15
    holdout_share: float = 0.2
    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    seed: int = 7
    params: Mapping[str, Any] = field(default_factory=dict)
    """LightGBM parameters that replace the defaults of ``lightgbm_params``."""


@dataclass(frozen=True)
class TimeSplit:
    """Row indices (into the log, file order) of each part, each part in time order."""

    fit: np.ndarray
    early_stopping: np.ndarray
    holdout: np.ndarray


def time_split(log: ImportedLog, options: TrainingOptions) -> TimeSplit:
    """Oldest rows to fit, then early stopping, then the newest held out (``LogError`` if too few rows)."""
    n = len(log)
    if n < MIN_ROWS:
        raise LogError(f"the log has {n} rows: too few to train and check a model (at least {MIN_ROWS})")
    n_holdout = max(1, round(n * options.holdout_share)) if options.holdout_share > 0 else 0
    n_stop = max(1, round(n * options.early_stopping_share))
    order = log.order
    n_fit = n - n_holdout - n_stop
    return TimeSplit(order[:n_fit], order[n_fit : n_fit + n_stop], order[n_fit + n_stop :])


def model_matrix(features: np.ndarray, actions: np.ndarray, action_ids: list[str]) -> np.ndarray:
    """Features followed by the action code (the action's index in ``action_ids``; NaN when unknown)."""
    codes = {a: float(i) for i, a in enumerate(action_ids)}
    matrix = np.empty((features.shape[0], features.shape[1] + 1), dtype=np.float64)
    matrix[:, :-1] = features
    matrix[:, -1] = [codes.get(a, math.nan) for a in actions.tolist()]
    return matrix


def train_model(
    log: ImportedLog,
    registry: Registry,
    options: TrainingOptions | None = None,
    *,
    schema: FeatureSchema,
    catalogue: Catalogue,
) -> Path:
    """Train on ``log`` and store the model as a new version in ``registry``, its card naming ``schema`` and
    ``catalogue`` (the caller's, read once); returns the version's directory."""
    started = time.perf_counter()
    options = options or TrainingOptions()
    split = time_split(log, options)
    objective = "binary" if log.outcome_kind == "binary" else "regression"
    fitted = log.outcomes[split.fit]
    if objective == "binary" and len(set(fitted.tolist())) < 2:
        raise LogError(
            f"{log.columns.outcome}: every row used for fitting is {int(fitted[0])}: there is nothing to learn"
        )
    # The service finds an action's code by its index in the card's actions: the catalogue's order for a model
    # that can go live, the log's own (sorted) actions otherwise.
    actions = catalogue.action_ids if log.encoding.servable else log.action_ids
    matrix = model_matrix(log.features, log.actions, actions)
    feature_names = [*log.encoding.feature_names(schema), ACTION_FEATURE]
    categorical = [*log.encoding.categorical_names(schema), ACTION_FEATURE]

    params = lightgbm_params(objective, options.seed, options.params)
    train_set = lgb.Dataset(
        matrix[split.fit],
        log.outcomes[split.fit],
        feature_name=feature_names,
        categorical_feature=categorical,
        free_raw_data=False,
    )
    stop_set = train_set.create_valid(matrix[split.early_stopping], log.outcomes[split.early_stopping])
    # One step a tree, out of the most it may grow; early stopping usually ends it well before.
    with progress(desc="training", unit="tree", total=options.num_boost_round) as trees:
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=options.num_boost_round,
            valid_sets=[stop_set],
            callbacks=[
                lgb.early_stopping(options.early_stopping_rounds, first_metric_only=True, verbose=False),
                lambda _: trees.update(),
            ],
        )
        trees.total = trees.n  # stopped early: done, not stuck at 11%
    best = int(booster.best_iteration or booster.current_iteration())
    model_text = booster.model_to_string(num_iteration=best)

    metrics: dict[str, Any] = {"best_iteration": best}
    for part, rows in (("early_stopping", split.early_stopping), ("holdout", split.holdout)):
        if len(rows):
            predicted = np.asarray(booster.predict(matrix[rows], num_iteration=best, num_threads=1))
            metrics.update(quality(log.outcomes[rows], predicted, objective, part))
    if objective == "binary" and len(split.holdout):
        predicted = np.asarray(booster.predict(matrix[split.holdout], num_iteration=best, num_threads=1))
        metrics["auc_holdout_by_action"] = {
            a: _finite(auc(log.outcomes[split.holdout][mine], predicted[mine]))
            for a in log.action_ids
            if (mine := log.actions[split.holdout] == a).any()
        }
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)

    fingerprint = log.fingerprint
    trained_at = dt.datetime.now(dt.UTC)
    stem = f"{trained_at:%Y%m%d-%H%M%S}-{hashlib.sha256((model_text + fingerprint).encode()).hexdigest()[:8]}"
    servable_reason = (
        "the log holds the service's feature schema and catalogue actions"
        if log.encoding.servable
        else "the log's own feature columns, not the service's feature schema: score and evaluate it offline only"
    )
    details: dict[str, Any] = {
        "logged_actions": log.action_ids,
        "servable_reason": servable_reason,
        "objective": objective,
        "encoding": log.encoding.to_json(),
        "log": {
            "source": Path(log.source).name if log.source else "",
            "rows": len(log),
            "fingerprint": fingerprint,
            "columns": {
                "action": log.columns.action,
                "outcome": log.columns.outcome,
                "propensity": log.columns.propensity,
                "time": log.columns.time,
                "features": list(log.columns.features or ()),
            },
            "outcome_kind": log.outcome_kind,
            "rows_by_action": {a: int((log.actions == a).sum()) for a in log.action_ids},
            "notes": log.notes,
        },
        "split": {
            "order": log.columns.time or "file order",
            "fit_rows": len(split.fit),
            "early_stopping_rows": len(split.early_stopping),
            "holdout_rows": len(split.holdout),
        },
        "params": {
            "lightgbm": params,
            **{k: v for k, v in asdict(options).items() if k != "params"},
            "lightgbm_version": lgb.__version__,
        },
    }
    # The same log trained twice in one second gives the same id: each training is still a version of its own.
    for attempt in range(1, 1000):
        card = ModelCard(
            version=stem if attempt == 1 else f"{stem}-{attempt}",
            feature_names=feature_names,
            categorical_features=categorical,
            actions=actions,
            schema_version=schema.version if log.encoding.servable else "",
            catalogue_version=catalogue.version if log.encoding.servable else "",
            trained_at=trained_at.isoformat(timespec="seconds"),
            servable=log.encoding.servable,
            metrics=metrics,
            details=details,
        )
        try:
            return registry.add(card.version, card.files(model_text))
        except VersionExists:
            continue
    raise VersionExists(f"no free version id for {stem} in {registry.root}")


def quality(outcomes: np.ndarray, predicted: np.ndarray, objective: str, part: str) -> dict[str, float | None]:
    """How well predictions match outcomes: AUC and log loss for 0/1 outcomes, RMSE and MAE for values."""
    if objective == "binary":
        return {
            f"auc_{part}": _finite(auc(outcomes, predicted)),
            f"logloss_{part}": _finite(logloss(outcomes, predicted)),
            f"mean_outcome_{part}": float(np.mean(outcomes)),
            f"mean_predicted_{part}": float(np.mean(predicted)),
        }
    errors = predicted - outcomes
    return {
        f"rmse_{part}": float(np.sqrt(np.mean(errors**2))),
        f"mae_{part}": float(np.mean(np.abs(errors))),
        f"mean_outcome_{part}": float(np.mean(outcomes)),
        f"mean_predicted_{part}": float(np.mean(predicted)),
    }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
