"""Batch scoring (``nba score``): every action's predicted outcome for each row of a log or a population.

The output has, per input row: ``row`` (1 = the first data row), the row's ``customer_id`` and ``decision_id``
when the input has them, one column per action (named by its id) with its predicted outcome, ``chosen_action``
and ``chosen_by``.

``chosen_action`` is the action the policy would choose. With a model that can go live, an input with the
service's features and a touchpoint (a ``touchpoint`` column, or one touchpoint for every row) is decided the
way the service decides (``decision.flow.plan``): the rules (eligibility, mandatory service recovery, boosts),
arbitration (mandatory first, then P(accept) x value x lever x boost) within the contact policy's offer limit,
and an action with no capacity pool in the row's context replaced by its fallback; ``chosen_by`` is ``rules``.
Two things only a live decision has are left out: exploration (the choice is the policy's own) and the stock
left (a sold-out upgrade is chosen still). The request context
comes from ``ctx_<key>`` columns, recent declines from ``declines_30d__<action>`` columns (0 when absent).
Otherwise the choice is the action with the highest predicted outcome among those the model learnt;
``chosen_by`` is ``model``. A row that no action is eligible for has an empty ``chosen_action``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from decision.catalogue import Catalogue
from decision.domain import DecisionRequest, Touchpoint, decision_day
from decision.eligibility import EligibilityPolicy
from decision.flow import plan
from decision.settings import Settings
from training.artifact import ModelArtifact
from training.log_import import (
    TIME_COLUMNS,
    LogError,
    encode_features,
    numeric_column,
    read_table,
    schema_feature_sources,
    schema_values,
    write_table,
)

KEY_COLUMNS = ("customer_id", "decision_id")
TOUCHPOINT_COLUMN = "touchpoint"


@dataclass(frozen=True)
class ScoreResult:
    output: Path
    rows: int
    actions: list[str]
    rules_applied: bool


def score_table(
    artifact: ModelArtifact,
    table: pa.Table,
    *,
    touchpoint: str | None = None,
    now: float | None = None,
    settings: Settings | None = None,
) -> tuple[pa.Table, bool]:
    """The scored table and whether the rules decided ``chosen_action`` (see the module docstring)."""
    schema = artifact.schema
    time_column = next((c for c in TIME_COLUMNS if c in table.column_names), None)
    times = numeric_column(table.column(time_column), time_column) if time_column else None
    features = encode_features(table, artifact.encoding, schema, times, now)
    actions = artifact.actions
    predicted = artifact.predict(features, actions)

    rules = _rules_inputs(artifact, table, touchpoint)
    if rules is not None:
        chosen = _decide_with_rules(artifact, table, predicted, rules, times, now, settings or Settings())
    else:
        learnt = [actions.index(a) for a in artifact.logged_actions if a in actions]
        best = np.asarray(learnt)[np.argmax(predicted[:, learnt], axis=1)] if learnt else None
        chosen = [actions[i] for i in best] if best is not None else [""] * table.num_rows

    columns: dict[str, Any] = {"row": pa.array(np.arange(1, table.num_rows + 1))}
    for key in KEY_COLUMNS:
        if key in table.column_names:
            columns[key] = table.column(key)
    for k, action in enumerate(actions):
        columns[action] = pa.array(predicted[:, k])
    columns["chosen_action"] = pa.array(chosen, type=pa.string())
    columns["chosen_by"] = pa.array(["rules" if rules is not None else "model"] * table.num_rows, type=pa.string())
    return pa.table(columns), rules is not None


def score_file(
    artifact: ModelArtifact, input_path: Path, output_path: Path, *, touchpoint: str | None = None
) -> ScoreResult:
    """Score a CSV/Parquet file and write the result (CSV or Parquet, by the output's suffix)."""
    table = read_table(Path(input_path))
    scored, rules = score_table(artifact, table, touchpoint=touchpoint)
    write_table(scored, Path(output_path))
    return ScoreResult(Path(output_path), table.num_rows, artifact.actions, rules)


def _rules_inputs(artifact: ModelArtifact, table: pa.Table, touchpoint: str | None) -> list[Touchpoint] | None:
    """Each row's touchpoint when the rules can decide (a servable model, the schema's features), else None."""
    if not artifact.servable or schema_feature_sources(table, artifact.schema) is None:
        if touchpoint:
            raise LogError("--touchpoint needs a model that can go live and an input with the service's features")
        return None
    if touchpoint:
        return [_touchpoint(touchpoint, "--touchpoint")] * table.num_rows
    if TOUCHPOINT_COLUMN not in table.column_names:
        return None
    names = table.column(TOUCHPOINT_COLUMN).to_pylist()
    return [_touchpoint(name, f"{TOUCHPOINT_COLUMN} (row {i + 1})") for i, name in enumerate(names)]


def _touchpoint(name: Any, where: str) -> Touchpoint:
    try:
        return Touchpoint.named(name)
    except ValueError as exc:
        raise LogError(f"{where}: {exc}") from None


def _decide_with_rules(
    artifact: ModelArtifact,
    table: pa.Table,
    predicted: np.ndarray,
    touchpoints: list[Touchpoint],
    times: np.ndarray | None,
    now: float | None,
    settings: Settings,
) -> list[str]:
    from decision.explanation import Narrator
    from rules.engine import RulesEngine

    schema = artifact.schema
    catalogue = Catalogue.load(settings.catalogue_path)
    engine = RulesEngine(settings.policy_dir, catalogue.action_ids, schema)
    policy = EligibilityPolicy(catalogue, engine, Narrator(settings.messages_path, schema).languages)
    values = schema_values(table, schema, times, now)
    clock = times if times is not None else np.full(table.num_rows, time.time() if now is None else now)
    context_columns = {c[len("ctx_") :]: c for c in table.column_names if c.startswith("ctx_")}
    contexts = {key: table.column(column).to_pylist() for key, column in context_columns.items()}
    # Contact counters (declines_30d__<action>, offers_4h, ...) given as columns replace the empty history.
    counter_columns = {
        c.key: table.column(c.key).to_pylist() for c in policy.contact_query.counters if c.key in table.column_names
    }
    code = {a: k for k, a in enumerate(artifact.actions)}
    customers = table.column("customer_id").to_pylist() if "customer_id" in table.column_names else None
    chosen = []
    for i in range(table.num_rows):
        context = {k: str(v[i]) for k, v in contexts.items() if v[i] not in (None, "")}
        fact = policy.fact(values[i], touchpoints[i], context, {}, True)
        fact.update({key: int(v[i] or 0) for key, v in counter_columns.items()})
        now_i = float(clock[i])
        eligible = policy.evaluate(fact, touchpoints[i], decision_day(now_i))
        propensity = {a: float(predicted[i, code[a]]) if a in code else math.nan for a in catalogue.action_ids}
        request = DecisionRequest(str(customers[i] or "") if customers else "", touchpoints[i], context, "", 1)
        # The service's own ranking; no exploration (the policy's choice), and no stock: only a commit knows it.
        planned = plan(schema, request, eligible, propensity, 0.0, "", now_i)
        chosen.append(planned.ranked[0].action.action_id if planned.ranked else "")
    return chosen
