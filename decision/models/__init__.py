"""The model files, owned below both serving and training: the registry of versions and what serves.

Serving (``decision/deployment.py``, ``decision/scoring.py``) reads them and training (``training/train.py``,
``nba publish``) writes them; neither owns them, so this package imports neither.
"""

from decision.models.registry import (
    CARD_FILE,
    INDEX_FILE,
    LATEST,
    LIVE_FILE,
    MODEL_FILE,
    Deployment,
    Registry,
    RegistryError,
    VersionExists,
    index_entry,
)

__all__ = [
    "CARD_FILE",
    "INDEX_FILE",
    "LATEST",
    "LIVE_FILE",
    "MODEL_FILE",
    "Deployment",
    "Registry",
    "RegistryError",
    "VersionExists",
    "index_entry",
]
