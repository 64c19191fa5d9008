"""Champion against challenger on live traffic, from the service's own exported log.

A split deployment (``nba publish CHAMPION --challenger V --share S``) lets each arm decide for its own customers,
chosen by a stable hash of the customer id, so the arms are comparable groups: each arm's observed mean outcome
of its first actions, and the challenger-minus-champion difference with a 95% interval, answer "is it better on
real customers?" directly.

A shadow deployment (``--shadow``) never lets the challenger decide; each decision logs the first action it would
have chosen. How often it agrees with the champion, and IPS / self-normalised IPS estimates of its mean outcome
from the logged propensities (its choice is deterministic, so pi(a_i | x_i) is 1 when it agrees, else 0), say
what it would have earned. Exploration is what makes those estimates possible: without it the shadow earns
credit only where it agrees with the champion.

Each arm explores with its own propensities, so the estimates treat the arm as part of the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.off_policy import DEFAULT_MAX_WEIGHT, Z_95, Estimate, PolicyValue, evaluate_policy

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class ArmResult:
    arm: str
    model_versions: list[str]
    decisions: int
    mean_outcome: Estimate


@dataclass(frozen=True)
class LiveComparison:
    """What the live traffic of a split or a shadow run says; either part is None when the log has none."""

    arms: list[ArmResult]
    challenger_minus_champion: Estimate | None
    shadow_model_versions: list[str]
    shadow_decisions: int
    shadow_agreement: float | None
    shadow: PolicyValue | None

    def to_json(self) -> dict[str, Any]:
        return {
            "arms": {
                a.arm: {"models": a.model_versions, "decisions": a.decisions, "mean": a.mean_outcome.to_json()}
                for a in self.arms
            },
            "challenger_minus_champion": (
                self.challenger_minus_champion.to_json() if self.challenger_minus_champion else None
            ),
            "shadow": None
            if self.shadow is None
            else {
                "models": self.shadow_model_versions,
                "decisions": self.shadow_decisions,
                "agreement": self.shadow_agreement,
                "ips": self.shadow.ips.to_json(),
                "snips": self.shadow.snips.to_json(),
            },
        }


def live_comparison(
    table: pa.Table,
    outcome_column: str,
    action_column: str = "action",
    propensity_column: str | None = "propensity",
    max_weight: float = DEFAULT_MAX_WEIGHT,
) -> LiveComparison | None:
    """The comparison on the log's first actions (``rank`` 1 when the log has ranks); None when the log says
    nothing of arms or shadows (not an export of the service, or only the champion ever served)."""
    names = set(table.column_names)
    if "arm" not in names:
        return None
    if "rank" in names:
        table = table.filter(pc.equal(table.column("rank"), 1))
    arms_column = np.array(table.column("arm").to_pylist(), dtype=object)
    outcomes = np.array(table.column(outcome_column).to_pylist(), dtype=np.float64)
    versions = np.array(table.column("model_version").to_pylist(), dtype=object) if "model_version" in names else None
    arms = []
    for arm in (CHAMPION, CHALLENGER):
        mask = arms_column == arm
        if mask.any():
            models = sorted(set(versions[mask].tolist())) if versions is not None else []
            arms.append(ArmResult(arm, models, int(mask.sum()), Estimate.of_mean(outcomes[mask])))
    by_arm = {a.arm: a for a in arms}
    difference = None
    if CHAMPION in by_arm and CHALLENGER in by_arm:
        difference = _difference(outcomes[arms_column == CHALLENGER], outcomes[arms_column == CHAMPION])

    shadow = agreement = None
    shadow_versions: list[str] = []
    shadow_rows = 0
    if "shadow_action" in names:
        chosen = np.array(table.column(action_column).to_pylist(), dtype=object)
        shadowed = np.array(table.column("shadow_action").to_pylist(), dtype=object)
        mask = np.array([bool(s) for s in shadowed])
        shadow_rows = int(mask.sum())
        if shadow_rows:
            agrees = (shadowed[mask] == chosen[mask]).astype(np.float64)
            agreement = float(agrees.mean())
            if "shadow_model_version" in names:
                logged = np.array(table.column("shadow_model_version").to_pylist(), dtype=object)
                shadow_versions = sorted(set(logged[mask].tolist()))
            if propensity_column and propensity_column in names:
                propensities = np.array(table.column(propensity_column).to_pylist(), dtype=np.float64)[mask]
                usable = np.isfinite(propensities) & (propensities > 0)
                shadow = evaluate_policy(
                    "shadow", outcomes[mask][usable], propensities[usable], agrees[usable], max_weight=max_weight
                )
    if len(arms) < 2 and shadow_rows == 0:
        return None
    return LiveComparison(arms, difference, shadow_versions, shadow_rows, agreement, shadow)


def _difference(first: np.ndarray, second: np.ndarray) -> Estimate:
    """Difference of two independent groups' means, with its 95% normal-approximation interval."""
    if len(first) < 2 or len(second) < 2:
        return Estimate.undefined()
    value = float(first.mean() - second.mean())
    se = math.sqrt(first.var(ddof=1) / len(first) + second.var(ddof=1) / len(second))
    return Estimate(value, value - Z_95 * se, value + Z_95 * se, se)
