"""The one LightGBM parameter set: what the demo model and ``nba train`` both train with (each may override)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lightgbm_params(objective: str, seed: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The LightGBM parameters for an objective (``binary`` or ``regression``), with overrides on top."""
    params: dict[str, Any] = {
        "objective": objective,
        "metric": ["binary_logloss", "auc"] if objective == "binary" else ["l2", "l1"],
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "lambda_l2": 1.0,
        # The same log and seed give the same model.txt: deterministic mode, a fixed layout and thread count.
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }
    params.update(overrides or {})
    return params
