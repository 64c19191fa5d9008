"""Arbitration: mandatory actions first, then priority = propensity x value x lever x rule boosts.

Ties are broken by action id so the same inputs always give the same ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from decision.catalogue import Action


@dataclass(frozen=True)
class Ranked:
    action: Action
    priority: float
    propensity: float
    mandatory: bool


def priority(action: Action, propensity: float, boost: float) -> float:
    return propensity * action.value * action.lever * boost


def arbitrate(
    actions: Sequence[Action],
    propensities: Sequence[float] | np.ndarray,
    mandatory: set[str],
    boosts: Mapping[str, float],
    max_actions: int | None = None,
) -> list[Ranked]:
    """The candidates best first; the top ``max_actions`` of them when given."""
    ranked = [
        Ranked(a, priority(a, float(p), boosts.get(a.action_id, 1.0)), float(p), a.action_id in mandatory)
        for a, p in zip(actions, propensities, strict=True)
    ]
    ranked.sort(key=lambda r: (not r.mandatory, -r.priority, r.action.action_id))
    return ranked[:max_actions]
