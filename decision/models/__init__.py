"""The model files, owned below both serving and training: the model card, the registry of versions and what
serves.

Serving (``decision/deployment.py``, ``decision/scoring.py``) reads them and training (``training/train.py``,
``training/demo_model.py``, ``nba publish``) writes them; neither owns them, so this package imports neither.
"""

from decision.models.card import ACTION_FEATURE, CARD_FILE, MODEL_FILE, ModelCard, ModelError
from decision.models.registry import (
    INDEX_FILE,
    LATEST,
    LIVE_FILE,
    Deployment,
    Registry,
    RegistryError,
    VersionExists,
    index_entry,
)

__all__ = [
    "ACTION_FEATURE",
    "CARD_FILE",
    "INDEX_FILE",
    "LATEST",
    "LIVE_FILE",
    "MODEL_FILE",
    "Deployment",
    "ModelCard",
    "ModelError",
    "Registry",
    "RegistryError",
    "VersionExists",
    "index_entry",
]
