"""A simulated decision log of the demo population, with known propensities and the ground truth behind it.

One row per decision: the customer's features as the model sees them (``FeatureSchema.parse``, under the derived
names: ``last_incident_days``), the one action a logging policy chose, the probability it chose it with, and
whether the customer accepted (drawn from ``training.population.true_accept_probability``). The columns are the
ones ``nba export-log`` writes from the service's own streams, so the same commands train on either.

Logging policies:

* ``uniform``: every offerable action with the same probability (the exploration that makes off-policy
  estimates exact on average);
* ``epsilon-greedy``: the legacy "push the most valuable product of the customer's line of business" policy,
  with probability ``epsilon`` spread over all actions so every action keeps some support.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from decision.catalogue import Catalogue
from features.schema import SECONDS_PER_DAY, FeatureSchema
from training.population import RESPONSES, generate_population, true_accept_probability
from training.stream_export import feature_fields

REFERENCE_NOW = 1_790_000_000.0
TOUCHPOINT_BY_DOMAIN = {"airline": "CHECKIN_AGENT", "bank": "BRANCH_TELLER"}

LoggingPolicy = Literal["uniform", "epsilon-greedy"]


def offerable_actions(catalogue: Catalogue) -> list[str]:
    """Actions a policy may choose on its own: the catalogue's, less those only a rule may require."""
    return [a.action_id for a in catalogue.actions.values() if not a.mandatory_only]


def simulate_decision_log(
    n_customers: int = 2_000,
    decisions_per_customer: int = 2,
    *,
    policy: LoggingPolicy = "uniform",
    epsilon: float = 0.3,
    seed: int = 7,
    start: float = REFERENCE_NOW,
    days: float = 60.0,
    schema: FeatureSchema,
    catalogue: Catalogue,
) -> pa.Table:
    """A decision log of ``n_customers * decisions_per_customer`` decisions over ``days`` days from ``start``.

    Columns: ``decision_id``, ``customer_id``, ``decided_at`` (epoch seconds, increasing), ``touchpoint``,
    ``ctx_flight`` (airline customers), ``action``, ``propensity``, ``accepted`` (0/1), then every schema
    feature under its derived name. The same arguments give the same table.
    """
    if policy not in ("uniform", "epsilon-greedy"):
        raise ValueError(f"policy must be uniform or epsilon-greedy; got {policy!r}")
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1]; got {epsilon}")
    actions = offerable_actions(catalogue)
    rng = np.random.default_rng(seed)
    population = generate_population(n_customers, seed=seed, now=start)
    n = len(population) * decisions_per_customer
    decided_at = np.sort(start + rng.uniform(0.0, days * SECONDS_PER_DAY, size=n))
    who = rng.integers(0, len(population), size=n)

    # Parsed once per customer at ``start``; only the age of the last incident moves with the decision's time.
    parsed = [schema.parse(raw, start) for raw in population]
    policies: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # probabilities and their running sum
    rows: list[dict[str, Any]] = []
    for i in range(n):
        raw = population[int(who[i])]
        now = float(decided_at[i])
        values = dict(parsed[int(who[i])])
        if values.get("last_incident_days") is not None:
            values["last_incident_days"] += (now - start) / SECONDS_PER_DAY
        domain = str(values["domain"])
        # The logging probabilities depend on the domain only (uniform) or on the legacy choice too.
        key = domain if policy == "uniform" else f"{domain}:{legacy_choice(values, actions, catalogue)}"
        if key not in policies:
            probabilities = logging_probabilities(values, actions, catalogue, policy, epsilon)
            policies[key] = (probabilities, np.cumsum(probabilities))
        probabilities, cumulative = policies[key]
        draw = rng.random() * cumulative[-1]
        chosen = min(int(np.searchsorted(cumulative, draw, side="right")), len(actions) - 1)
        action_id = actions[chosen]
        accepted = int(rng.random() < true_accept_probability(values, action_id))
        row: dict[str, Any] = {
            "decision_id": f"sim-{seed}-{i:07d}",
            "customer_id": raw["customer_id"],
            "decided_at": round(now, 3),
            "touchpoint": TOUCHPOINT_BY_DOMAIN.get(domain, "WEB"),
            "ctx_flight": f"AZ{610 + i % 7}" if domain == "airline" else None,
            "action": action_id,
            "propensity": float(probabilities[chosen]),
            "accepted": accepted,
        }
        row.update(values)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=_arrow_schema(schema))


def logging_probabilities(
    values: Mapping[str, Any], actions: Sequence[str], catalogue: Catalogue, policy: LoggingPolicy, epsilon: float
) -> np.ndarray:
    """The logging policy's probability of each action for one customer (sums to 1)."""
    k = len(actions)
    if policy == "uniform":
        return np.full(k, 1.0 / k)
    probabilities = np.full(k, epsilon / k)
    probabilities[actions.index(legacy_choice(values, actions, catalogue))] += 1.0 - epsilon
    return probabilities


def legacy_choice(values: Mapping[str, Any], actions: Sequence[str], catalogue: Catalogue) -> str:
    """The most valuable action meant for the customer's line of business (ties: catalogue order)."""
    domain = values.get("domain")
    fitting = [a for a in actions if RESPONSES.get(a, (None, None))[0] in (None, domain)]
    return max(fitting or list(actions), key=lambda a: catalogue.actions[a].value)


def true_probabilities(rows: Sequence[Mapping[str, Any]], actions: Sequence[str]) -> np.ndarray:
    """The ground truth P(accept) of every action (columns) for typed feature values (rows)."""
    return np.array([[true_accept_probability(v, a) for a in actions] for v in rows], dtype=np.float64)


def _arrow_schema(schema: FeatureSchema) -> pa.Schema:
    head = [
        pa.field("decision_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("decided_at", pa.float64()),
        pa.field("touchpoint", pa.string()),
        pa.field("ctx_flight", pa.string()),
        pa.field("action", pa.string()),
        pa.field("propensity", pa.float64()),
        pa.field("accepted", pa.int64()),
    ]
    return pa.schema(head + feature_fields(schema))
