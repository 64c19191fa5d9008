"""Evaluation of a trained model on a log: prediction quality, and off-policy estimates of the policy it makes.

The rows evaluated are the ones the model never saw: on the training log itself, its newest rows that training
held out (recognised by the log's fingerprint); on any other log, all of its rows. On them:

* prediction quality: AUC, log loss and calibration for 0/1 outcomes (RMSE and MAE for values), per action too;
* off-policy estimates (``training.off_policy``) of the mean outcome of
  - the logging policy (the one that wrote the log: its observed mean, which every estimator returns),
  - the model's policy (each row's action with the highest predicted outcome, among the actions it learnt),
  - each single-action policy (always that action),
  and of the difference between the model's policy and the logging policy, paired row by row.

Without logged propensities the estimators assume the log's actions were chosen uniformly; the result says so
and marks the estimates as not to be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from training.artifact import ModelArtifact
from training.demo_model import auc, logloss
from training.live_traffic import LiveComparison, live_comparison
from training.log_import import ImportedLog, LogError
from training.off_policy import DEFAULT_MAX_WEIGHT, Estimate, PolicyValue, difference, evaluate_policy

LOGGING_POLICY = "logging"
MODEL_POLICY = "model"
ACTION_POLICY = "action:"  # + action id
FEW_ROWS = 30


@dataclass
class Evaluation:
    """Everything the report shows, computed once."""

    artifact: ModelArtifact
    log: ImportedLog
    rows: np.ndarray  # indices into the log of the evaluated rows, in time order
    rows_kind: Literal["holdout", "all"]
    rows_label: str
    candidates: list[str]  # the actions a policy may choose (the ones the model learnt)
    predicted: np.ndarray  # rows x candidates: predicted outcome of every candidate
    predicted_logged: np.ndarray  # predicted outcome of each row's logged action
    propensities: np.ndarray  # logged, or assumed uniform when the log has none
    propensities_logged: bool
    policies: list[PolicyValue]
    model_minus_logging: dict[str, Estimate]
    metrics: dict[str, Any]
    max_weight: float
    warnings: list[str] = field(default_factory=list)
    # Champion against challenger (or shadow) on the live traffic the log holds, when it holds any.
    live: LiveComparison | None = None

    @property
    def outcomes(self) -> np.ndarray:
        return self.log.outcomes[self.rows]

    @property
    def actions(self) -> np.ndarray:
        return self.log.actions[self.rows]

    @property
    def binary(self) -> bool:
        return self.artifact.objective == "binary"

    @property
    def trusted(self) -> bool:
        return self.propensities_logged

    def policy(self, name: str) -> PolicyValue:
        return next(p for p in self.policies if p.policy == name)

    def summary(self) -> dict[str, Any]:
        """The JSON ``nba evaluate`` prints on its last line."""
        return {
            "model": self.artifact.version,
            "log": self.log.source.rsplit("/", 1)[-1],
            "rows": len(self.rows),
            "rows_kind": self.rows_kind,
            "outcome": "binary" if self.binary else "value",
            "propensities": "logged" if self.propensities_logged else "missing",
            "trusted": self.trusted,
            "max_weight": self.max_weight,
            "metrics": {k: v for k, v in self.metrics.items() if not isinstance(v, dict)},
            "policies": {p.policy: p.to_json() for p in self.policies},
            "model_minus_logging": {k: v.to_json() for k, v in self.model_minus_logging.items()},
            "live_traffic": self.live.to_json() if self.live is not None else None,
            "warnings": self.warnings,
        }


def evaluate_model(
    artifact: ModelArtifact,
    log: ImportedLog,
    *,
    rows: Literal["auto", "all"] = "auto",
    max_weight: float = DEFAULT_MAX_WEIGHT,
) -> Evaluation:
    """Evaluate ``artifact`` on ``log`` (imported with the model's encoding); see the module docstring."""
    warnings: list[str] = []
    trained_on = artifact.card.log.get("fingerprint")
    same_log = trained_on == log.fingerprint
    order = log.order
    kind: Literal["holdout", "all"]
    if same_log and rows == "auto":
        held_out = int(artifact.card.split.get("holdout_rows", 0))
        if held_out == 0:
            raise LogError("this is the model's training log and training held no rows out: evaluate another log")
        chosen, kind = order[-held_out:], "holdout"
        label = f"the {held_out:,} newest rows of the training log, held out from training"
    else:
        chosen, kind = order, "all"
        label = f"all {len(log):,} rows of the log"
        if same_log:
            warnings.append("every row of the training log is evaluated, the fitted ones too: optimistic")
        else:
            label += " (not the training log: make sure the model never saw them)"

    candidates = artifact.logged_actions
    features = log.features[chosen]
    actions = log.actions[chosen]
    outcomes = log.outcomes[chosen]
    predicted = artifact.predict(features, candidates)
    predicted_logged = artifact.predict_logged(features, actions)

    if log.propensities is not None:
        propensities = log.propensities[chosen]
    else:
        propensities = np.full(len(chosen), 1.0 / len(log.action_ids))
        warnings.append(
            "the log has no propensities: the estimates below assume every action was equally likely to be "
            "chosen, which a real policy rarely does. They cannot be trusted; log propensities to get honest ones."
        )

    policies = {}
    policies[LOGGING_POLICY] = {"target": propensities, "direct": predicted_logged}
    if len(candidates):
        choice = np.argmax(predicted, axis=1)
        chosen_actions = np.asarray(candidates, dtype=object)[choice]
        policies[MODEL_POLICY] = {
            "target": (actions == chosen_actions).astype(np.float64),
            "direct": predicted[np.arange(len(chosen)), choice],
        }
    for k, action_id in enumerate(candidates):
        policies[ACTION_POLICY + action_id] = {
            "target": (actions == action_id).astype(np.float64),
            "direct": predicted[:, k],
        }
    for spec in policies.values():
        spec["predicted_logged"] = predicted_logged

    values = [
        evaluate_policy(
            name,
            outcomes,
            propensities,
            spec["target"],
            direct=spec["direct"],
            predicted_logged=predicted_logged,
            max_weight=max_weight,
        )
        for name, spec in policies.items()
    ]
    versus = (
        difference(outcomes, propensities, policies[MODEL_POLICY], policies[LOGGING_POLICY], max_weight)
        if MODEL_POLICY in policies
        else {}
    )
    for value in values:
        if value.policy != LOGGING_POLICY and value.supported_rows < FEW_ROWS:
            warnings.append(
                f"policy {value.policy}: only {_rows(value.supported_rows)} chose its actions: its estimates are weak"
            )
    if len(set(actions.tolist())) == 1:
        warnings.append("the evaluated rows hold one action only: policies that choose another cannot be judged")

    return Evaluation(
        artifact=artifact,
        log=log,
        rows=chosen,
        rows_kind=kind,
        rows_label=label,
        candidates=candidates,
        predicted=predicted,
        predicted_logged=predicted_logged,
        propensities=propensities,
        propensities_logged=log.propensities is not None,
        policies=values,
        model_minus_logging=versus,
        metrics=prediction_metrics(outcomes, predicted_logged, actions, artifact.objective == "binary"),
        max_weight=max_weight,
        warnings=warnings,
        live=live_comparison(
            log.table, log.columns.outcome, log.columns.action, log.columns.propensity, max_weight=max_weight
        ),
    )


def prediction_metrics(
    outcomes: np.ndarray, predicted: np.ndarray, actions: np.ndarray, binary: bool
) -> dict[str, Any]:
    """How well the predictions of the logged actions match their outcomes, overall and per action."""
    metrics: dict[str, Any] = {
        "mean_outcome": float(np.mean(outcomes)),
        "mean_predicted": float(np.mean(predicted)),
    }
    if binary:
        metrics["auc"] = _finite(auc(outcomes, predicted))
        metrics["logloss"] = _finite(logloss(outcomes, predicted))
        metrics["auc_by_action"] = {
            a: _finite(auc(outcomes[actions == a], predicted[actions == a])) for a in sorted(set(actions.tolist()))
        }
    else:
        errors = predicted - outcomes
        metrics["rmse"] = float(np.sqrt(np.mean(errors**2)))
        metrics["mae"] = float(np.mean(np.abs(errors)))
    return metrics


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count:,} rows"
