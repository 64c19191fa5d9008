"""The model card: what ``model.json`` says about ``model.txt``, written, read and checked in one place.

A model directory holds LightGBM's text model (``model.txt``) and its card (``model.json``). The model's input is
the feature columns the card names followed by the ``action`` column, the action's index in the card's
``actions``. The demo model (``nba train-demo``), a trained version (``nba train``) and a benchmark's model all
write their card through :class:`ModelCard`; the scorer, the registry and the offline tools read it back the same
way. The card is written after model.txt, so a reader that finds a card finds the whole model it describes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.schema import FeatureSchema

MODEL_FILE = "model.txt"
CARD_FILE = "model.json"
ACTION_FEATURE = "action"


class ModelError(RuntimeError):
    """The model artifact is missing or does not match the feature schema."""


@dataclass(frozen=True)
class ModelCard:
    """The facts every reader of a model needs, and ``details``: whatever else its training recorded (the log
    it learnt from, the split, the parameters, the encoding of an offline model's columns...)."""

    version: str
    feature_names: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    schema_version: str = ""
    categorical_features: list[str] = field(default_factory=list)
    catalogue_version: str = ""
    trained_at: str = ""
    # False for a model trained on a log's own columns rather than the feature schema's: offline use only.
    servable: bool = True
    metrics: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, model_dir: Path) -> ModelCard:
        """The card in ``model_dir``; ModelError when there is none."""
        path = Path(model_dir) / CARD_FILE
        if not path.exists():
            raise ModelError(f"{path} is missing: train a model first (nba train-demo)")
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_json(cls, data: Any) -> ModelCard:
        if not isinstance(data, dict) or "version" not in data:
            raise ModelError("a model card is a JSON object with at least a version")
        typed = {name for name in cls.__dataclass_fields__ if name != "details"}
        return cls(
            version=str(data["version"]),
            feature_names=list(data.get("feature_names", [])),
            actions=list(data.get("actions", [])),
            schema_version=str(data.get("schema_version", "")),
            categorical_features=list(data.get("categorical_features", [])),
            catalogue_version=str(data.get("catalogue_version", "")),
            trained_at=str(data.get("trained_at", "")),
            # A card without an encoding is the demo model's (nba train-demo): schema features by construction.
            servable=bool(data.get("servable", "encoding" not in data)),
            metrics=dict(data.get("metrics", {})),
            details={k: v for k, v in data.items() if k not in typed},
        )

    def to_json(self) -> str:
        document = {
            "version": self.version,
            "feature_names": self.feature_names,
            "categorical_features": self.categorical_features,
            "actions": self.actions,
            "schema_version": self.schema_version,
            "catalogue_version": self.catalogue_version,
            "servable": self.servable,
            "trained_at": self.trained_at,
            **self.details,
            "metrics": dict(self.metrics),
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    def files(self, model_text: str) -> dict[str, str]:
        """A model directory's files: what ``Registry.add`` stores as a version."""
        return {MODEL_FILE: model_text, CARD_FILE: self.to_json()}

    def write(self, model_dir: Path, model_text: str) -> Path:
        """Write model.txt, then this card, each replaced whole; returns ``model_dir``."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        # A server may be reading the directory: it sees the old file or the new one, whole; the card goes last.
        for name, text in self.files(model_text).items():
            temporary = model_dir / f"{name}.tmp"
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, model_dir / name)
        return model_dir

    # -- what a reader checks -------------------------------------------------------------------------------

    def check(self, schema: FeatureSchema) -> None:
        """Raise ModelError unless the model's input is this feature schema's model row and the action."""
        expected = [*schema.model_feature_names, ACTION_FEATURE]
        if self.feature_names != expected:
            missing = sorted(set(expected) - set(self.feature_names))
            extra = sorted(set(self.feature_names) - set(expected))
            raise ModelError(
                f"model {self.version} does not match the feature schema: "
                f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'} (or a different order)"
            )

    def describes(self, model_file_features: Sequence[str]) -> bool:
        """Whether model.txt's own feature names are the card's."""
        return list(model_file_features) == self.feature_names

    @property
    def encoding(self) -> Mapping[str, Any] | None:
        """How an imported log's columns were encoded (``training.log_import.FeatureEncoding``); None for the
        demo model, whose input is the schema's model row."""
        encoding = self.details.get("encoding")
        return encoding if isinstance(encoding, Mapping) else None

    @property
    def objective(self) -> str:
        return str(self.details.get("objective", "binary"))

    @property
    def logged_actions(self) -> list[str]:
        """The actions the training log held: those the model has learnt, the ones a policy may choose."""
        return list(self.details.get("logged_actions") or self.actions)

    @property
    def log(self) -> Mapping[str, Any]:
        """What the training log was: source, rows, fingerprint, columns (empty for the demo model)."""
        return dict(self.details.get("log", {}))

    @property
    def split(self) -> Mapping[str, Any]:
        """How the log's rows were split: fit, early stopping, held out (empty for the demo model)."""
        return dict(self.details.get("split", {}))
