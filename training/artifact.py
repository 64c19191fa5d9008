"""A trained model read back from its directory, for scoring and evaluating logs offline.

The directory is what the service reads (``model.txt`` + ``model.json``); the card also says how the log's
columns were encoded, so new rows are encoded the same way. The model's input is the feature columns followed
by the ``action`` column (the action's index in the card's ``actions``), as in ``decision/scoring.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np

from decision.models import ACTION_FEATURE, CARD_FILE, MODEL_FILE, ModelCard
from features.schema import FeatureSchema
from training.log_import import FeatureEncoding, LogColumns


class ArtifactError(ValueError):
    """The model directory cannot be used offline (e.g. trained on another feature schema)."""


@dataclass(frozen=True)
class ModelArtifact:
    """model.txt and model.json of one version."""

    directory: Path
    card: ModelCard
    booster: lgb.Booster
    encoding: FeatureEncoding
    schema: FeatureSchema

    @classmethod
    def load(cls, directory: Path, schema: FeatureSchema) -> ModelArtifact:
        """The model in ``directory``, its features read by ``schema`` (the caller's)."""
        directory = Path(directory)
        card = ModelCard.read(directory)
        # The demo model (nba train-demo) predates the registry: it is a schema model by construction.
        encoding = FeatureEncoding.from_json(card.encoding or {"mode": "schema", "columns": []})
        expected = [*encoding.feature_names(schema), ACTION_FEATURE]
        if card.feature_names != expected:
            raise ArtifactError(
                f"model {card.version} was trained on other features than this feature schema gives: "
                f"retrain it (nba train) on a log of the current schema"
            )
        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        if not card.describes(booster.feature_name()):
            raise ArtifactError(f"{directory / MODEL_FILE} features differ from {CARD_FILE}")
        return cls(directory, card, booster, encoding, schema)

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def actions(self) -> list[str]:
        """Every action the model can score, in the order of its action codes."""
        return self.card.actions

    @property
    def logged_actions(self) -> list[str]:
        """The actions the training log held: those the model has learnt, the ones a policy may choose."""
        return self.card.logged_actions

    @property
    def servable(self) -> bool:
        return self.card.servable

    @property
    def objective(self) -> str:
        return self.card.objective

    def log_columns(self, **overrides: str | None) -> LogColumns:
        """The column names the model was trained with, unless overridden (None keeps the trained one)."""
        trained = self.card.log.get("columns", {})
        chosen = {k: trained.get(k) for k in ("action", "outcome", "propensity", "time")}
        chosen.update({k: v for k, v in overrides.items() if v is not None})
        if not chosen["action"] or not chosen["outcome"]:
            raise ArtifactError("the model card does not name the action and outcome columns: pass them")
        return LogColumns(
            action=str(chosen["action"]),
            outcome=str(chosen["outcome"]),
            propensity=chosen["propensity"],
            time=chosen["time"],
        )

    def predict(self, features: np.ndarray, actions: list[str] | None = None) -> np.ndarray:
        """Predicted outcome of each action (columns, in ``actions`` order) for each row of features."""
        actions = self.actions if actions is None else actions
        codes = {a: float(i) for i, a in enumerate(self.actions)}
        n, k = features.shape[0], len(actions)
        if n == 0 or k == 0:
            return np.empty((n, k))
        matrix = np.empty((n * k, features.shape[1] + 1), dtype=np.float64)
        matrix[:, :-1] = np.repeat(features, k, axis=0)
        matrix[:, -1] = np.tile([codes.get(a, np.nan) for a in actions], n)
        return np.asarray(self.booster.predict(matrix, num_threads=1)).reshape(n, k)

    def predict_logged(self, features: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Predicted outcome of each row's own action."""
        codes = {a: float(i) for i, a in enumerate(self.actions)}
        matrix = np.empty((features.shape[0], features.shape[1] + 1), dtype=np.float64)
        matrix[:, :-1] = features
        matrix[:, -1] = [codes.get(a, np.nan) for a in actions.tolist()]
        return np.asarray(self.booster.predict(matrix, num_threads=1))
