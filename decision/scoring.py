"""Scoring: P(accept | customer features, action) for every eligible candidate in one model call."""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from decision.contributions import PathContributions, top_contributions
from decision.lightgbm_native import NativeBooster
from features.schema import FeatureSchema

ACTION_FEATURE = "action"


class ModelError(RuntimeError):
    """The model artifact is missing or does not match the feature schema."""


class Scorer(abc.ABC):
    """Estimates acceptance probabilities; the contract every model runtime keeps."""

    version: str

    @abc.abstractmethod
    def score(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        """P(accept) for each action, in the order given, for one customer's typed feature values."""

    @abc.abstractmethod
    def explain(self, values: Mapping[str, Any], action_id: str, k: int) -> list[tuple[str, float]]:
        """The k features that moved this action's score most: (derived feature name, log-odds contribution)."""


@dataclass(frozen=True)
class ModelCard:
    """What model.json says about model.txt."""

    version: str
    feature_names: list[str]
    actions: list[str]
    schema_version: str

    @classmethod
    def read(cls, model_dir: Path) -> ModelCard:
        path = model_dir / "model.json"
        if not path.exists():
            raise ModelError(f"{path} is missing: train a model first (nba train-demo)")
        card = json.loads(path.read_text())
        return cls(
            version=str(card["version"]),
            feature_names=list(card["feature_names"]),
            actions=list(card["actions"]),
            schema_version=str(card.get("schema_version", "")),
        )


class LightGBMScorer(Scorer):
    """A LightGBM booster scored on one thread (its OpenMP pool fights the gRPC threads under load)."""

    def __init__(self, model_dir: Path, schema: FeatureSchema) -> None:
        self.card = ModelCard.read(model_dir)
        expected = schema.model_feature_names + [ACTION_FEATURE]
        if self.card.feature_names != expected:
            missing = sorted(set(expected) - set(self.card.feature_names))
            extra = sorted(set(self.card.feature_names) - set(expected))
            raise ModelError(
                f"model {self.card.version} does not match the feature schema: "
                f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'} (or a different order)"
            )
        booster = lgb.Booster(model_file=str(model_dir / "model.txt"))
        if booster.feature_name() != expected:
            raise ModelError(f"{model_dir / 'model.txt'} features differ from model.json")
        self.schema = schema
        self.version = self.card.version
        self._action_code = {a: float(i) for i, a in enumerate(self.card.actions)}
        self._contributions = PathContributions(booster)
        # Serving goes through LightGBM's C API: the same predictions, a third of the Python wrapper's cost.
        self._native = NativeBooster(model_dir / "model.txt")

    def rows(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        """The model input: the customer's row repeated per action, the last column the action's code."""
        base = self.schema.model_row(values)
        matrix = np.empty((len(action_ids), base.shape[0] + 1), dtype=np.float64)
        matrix[:, :-1] = base
        # An action the model never saw is scored as a missing category: the model's average for the customer.
        matrix[:, -1] = [self._action_code.get(a, np.nan) for a in action_ids]
        return matrix

    def score(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        if not action_ids:
            return np.empty(0)
        return self._native.predict(self.rows(values, action_ids))

    def explain(self, values: Mapping[str, Any], action_id: str, k: int) -> list[tuple[str, float]]:
        leaves = self._native.leaves(self.rows(values, [action_id]))[0]
        contributions = self._contributions.explain_leaves(leaves)
        return top_contributions(contributions, self._contributions.feature_names, k=k, exclude=(ACTION_FEATURE,))
