"""Off-policy evaluation: what a policy would have earned on the logged rows, from the logging propensities.

For row i the log holds the context x_i, the action a_i the logging policy chose with probability p_i (the
propensity) and the outcome r_i. A target policy pi is given by two numbers per row: ``pi(a_i | x_i)``, the
probability it would choose the logged action, and (for the doubly robust estimate) ``direct_i``, the reward
model's expected outcome under pi, sum over a of pi(a | x_i) q(x_i, a). With importance weights
w_i = pi(a_i | x_i) / p_i:

* IPS, inverse propensity scoring: mean(w_i r_i), weights clipped at ``max_weight`` (tiny propensities would
  otherwise let one row decide the estimate; clipping trades that variance for a downward bias);
* SNIPS, self-normalised IPS: sum(w_i r_i) / sum(w_i), unclipped: always between the smallest and the largest
  outcome, however small the propensities;
* DR, doubly robust: mean(direct_i + w_i (r_i - q(x_i, a_i))), the reward model corrected by the clipped
  weights: unbiased when either the propensities or the reward model are right, and of lower variance.

Each estimate comes with a 95% normal-approximation interval from the per-row contributions (the delta method
for SNIPS). The logging policy itself has w_i = 1 on every row, so all three give its observed mean outcome.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

Z_95 = 1.959963984540054
DEFAULT_MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% confidence interval."""

    estimate: float
    low: float
    high: float
    std_error: float

    @classmethod
    def of_mean(cls, contributions: np.ndarray) -> Estimate:
        """The mean of per-row contributions and its normal-approximation interval."""
        n = len(contributions)
        if n == 0:
            return cls.undefined()
        mean = float(np.mean(contributions))
        se = float(np.std(contributions, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        return cls(mean, mean - Z_95 * se, mean + Z_95 * se, se)

    @classmethod
    def undefined(cls) -> Estimate:
        return cls(math.nan, math.nan, math.nan, math.nan)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PolicyValue:
    """The three estimates of one policy's mean outcome, and how much of the log supports them."""

    policy: str
    ips: Estimate
    snips: Estimate
    dr: Estimate
    rows: int
    supported_rows: int  # rows whose logged action the policy could choose (pi(a_i | x_i) > 0)
    effective_sample_size: float  # (sum w)^2 / sum w^2 of the unclipped weights
    clipped_rows: int
    max_weight: float  # the largest unclipped weight

    def to_json(self) -> dict[str, object]:
        return {
            "ips": self.ips.to_json(),
            "snips": self.snips.to_json(),
            "dr": self.dr.to_json(),
            "rows": self.rows,
            "supported_rows": self.supported_rows,
            "effective_sample_size": round(self.effective_sample_size, 2),
            "clipped_rows": self.clipped_rows,
            "max_weight": self.max_weight,
        }


def evaluate_policy(
    name: str,
    outcomes: npt.ArrayLike,
    propensities: npt.ArrayLike,
    target_probabilities: npt.ArrayLike,
    direct: npt.ArrayLike | None = None,
    predicted_logged: npt.ArrayLike | None = None,
    max_weight: float = DEFAULT_MAX_WEIGHT,
) -> PolicyValue:
    """IPS, SNIPS and DR estimates of a target policy's mean outcome on logged rows.

    ``target_probabilities``: pi(a_i | x_i) per row. ``direct``: the reward model's expected outcome under the
    policy per row, and ``predicted_logged``: its prediction for the logged action; without them DR is left
    undefined. ``max_weight`` clips the weights of IPS and DR (``math.inf``: no clipping).
    """
    r = np.asarray(outcomes, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    pi = np.asarray(target_probabilities, dtype=np.float64)
    if not (len(r) == len(p) == len(pi)):
        raise ValueError("outcomes, propensities and target probabilities must have one value per row")
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError("propensities must be in (0, 1]")
    weights = pi / p
    clipped = np.minimum(weights, max_weight)
    ips = Estimate.of_mean(clipped * r)
    snips = self_normalised(r, weights)
    dr = Estimate.undefined()
    if direct is not None and predicted_logged is not None:
        q_pi = np.asarray(direct, dtype=np.float64)
        q_logged = np.asarray(predicted_logged, dtype=np.float64)
        dr = Estimate.of_mean(q_pi + clipped * (r - q_logged))
    total = float(weights.sum())
    squares = float((weights**2).sum())
    return PolicyValue(
        policy=name,
        ips=ips,
        snips=snips,
        dr=dr,
        rows=len(r),
        supported_rows=int((pi > 0).sum()),
        effective_sample_size=total**2 / squares if squares > 0 else 0.0,
        clipped_rows=int((weights > max_weight).sum()),
        max_weight=float(weights.max()) if len(weights) else 0.0,
    )


def self_normalised(outcomes: np.ndarray, weights: np.ndarray) -> Estimate:
    """sum(w r) / sum(w), with the delta-method interval; undefined when no row has weight."""
    total = float(weights.sum())
    n = len(outcomes)
    if total <= 0 or n < 2:
        return Estimate.undefined()
    value = float((weights * outcomes).sum() / total)
    # Influence of each row on the ratio estimator: w_i (r_i - V) / mean(w).
    influence = weights * (outcomes - value) / (total / n)
    se = float(np.std(influence, ddof=1) / math.sqrt(n))
    return Estimate(value, value - Z_95 * se, value + Z_95 * se, se)


def difference(
    outcomes: npt.ArrayLike,
    propensities: npt.ArrayLike,
    first: Mapping[str, npt.ArrayLike],
    second: Mapping[str, npt.ArrayLike],
    max_weight: float = DEFAULT_MAX_WEIGHT,
) -> dict[str, Estimate]:
    """IPS and DR estimates of (first policy - second policy), paired row by row, so the interval is honest.

    Each policy is a mapping with ``target`` (pi(a_i | x_i)), ``direct`` and ``predicted_logged`` as for
    ``evaluate_policy``.
    """
    r = np.asarray(outcomes, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)

    def contributions(policy: Mapping[str, npt.ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
        w = np.minimum(np.asarray(policy["target"], dtype=np.float64) / p, max_weight)
        q_logged = np.asarray(policy["predicted_logged"], dtype=np.float64)
        return w * r, np.asarray(policy["direct"], dtype=np.float64) + w * (r - q_logged)

    ips_a, dr_a = contributions(first)
    ips_b, dr_b = contributions(second)
    return {"ips": Estimate.of_mean(ips_a - ips_b), "dr": Estimate.of_mean(dr_a - dr_b)}
