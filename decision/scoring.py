"""Scoring: P(accept | customer features, action) for every eligible candidate in one model call."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from decision.contributions import PathContributions, top_contributions
from decision.lightgbm_native import NativeBooster
from decision.models import ACTION_FEATURE, CARD_FILE, MODEL_FILE, ModelCard, ModelError
from features.schema import FeatureSchema


class Scorer(abc.ABC):
    """Estimates acceptance probabilities; the contract every model runtime keeps."""

    version: str

    @abc.abstractmethod
    def score(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        """P(accept) for each action, in the order given, for one customer's typed feature values."""

    @abc.abstractmethod
    def explain(self, values: Mapping[str, Any], action_id: str, k: int) -> list[tuple[str, float]]:
        """The k features that moved this action's score most: (derived feature name, log-odds contribution)."""


class LightGBMScorer(Scorer):
    """A LightGBM booster scored on one thread (its OpenMP pool fights the gRPC threads under load)."""

    def __init__(self, model_dir: Path, schema: FeatureSchema) -> None:
        self.card = ModelCard.read(model_dir)
        self.card.check(schema)
        booster = lgb.Booster(model_file=str(model_dir / MODEL_FILE))
        if not self.card.describes(booster.feature_name()):
            raise ModelError(f"{model_dir / MODEL_FILE} features differ from {CARD_FILE}")
        self.schema = schema
        self.version = self.card.version
        self._action_code = {a: float(i) for i, a in enumerate(self.card.actions)}
        self._contributions = PathContributions(booster)
        # Serving goes through LightGBM's C API: the same predictions, a third of the Python wrapper's cost.
        self._native = NativeBooster(model_dir / MODEL_FILE)

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
