"""How a decision's cost grows with the number of candidate actions and of features.

For each size a synthetic world is generated in a temporary directory: a feature schema of N features (every
tenth a category, the rest numbers), a catalogue of M offers (all offered at every touchpoint, texts in every
language the messages file speaks), ten generated boost rules, a LightGBM model trained on random rows of those
features with the same shape whatever the size (100 trees of 31 leaves), and 1,000 customers in a real Redis.
Decisions run in-process on ``DecisionFlow``, built by the service's own wiring (``decision.app.build_flow``),
sequentially, at one touchpoint, with the shipped messages file.

    python -m benchmarks.growth [--decisions 1000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import yaml

from benchmarks.harness import Latency
from decision.app import build_flow, definitions
from decision.domain import DecisionRequest, Touchpoint
from decision.models import ModelCard
from decision.scoring import Scorer
from decision.settings import Settings
from features.redis_client import connect
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from features.schema import FeatureSchema

ACTION_SIZES = (5, 20, 50, 200)
FEATURE_SIZES = (20, 100, 500)
FIXED_FEATURES = 40
FIXED_ACTIONS = 20
TREES, LEAVES = 100, 31
RULES = 10
CUSTOMERS = 1_000
TOUCHPOINT = Touchpoint.WEB
HELD_FIXED = (
    f"Held fixed: {FIXED_FEATURES} features while the actions grow and {FIXED_ACTIONS} actions while the features "
    f"grow; {RULES} generated boost rules; a model of {TREES} trees x {LEAVES} leaves; one touchpoint "
    f"({TOUCHPOINT.name}, screen texts); at most 3 actions answered, the first explained by its top 3 features; "
    f"{CUSTOMERS:,} customers in a real Redis (one read per decision); the shipped messages file."
)


def schema_document(n_features: int) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for i in range(n_features):
        name = f"f{i:03d}"
        if i % 10 == 9:
            features[name] = {"type": "category", "values": ["a", "b", "c"], "default": "a", "label": name}
        else:
            features[name] = {"type": "number", "default": 0, "label": name}
    return {"version": 1, "features": features}


def catalogue_document(n_actions: int, languages: Sequence[str]) -> dict[str, Any]:
    rng = random.Random(11)
    actions: dict[str, Any] = {}
    for i in range(n_actions):
        text = {d: f"Offer {i} for {{greeting_name}}." for d in ("agent", "screen", "voice")}
        actions[f"offer_{i:03d}"] = {
            "kind": "offer",
            "value": rng.randint(10, 200),
            "touchpoints": [t.name for t in Touchpoint],
            "title": {language: f"Offer {i}" for language in languages},
            "messages": {language: dict(text) for language in languages},
        }
    return {"version": 1, "currency": "EUR", "default_max_actions": 3, "actions": actions}


def rules_document(n_features: int, action_ids: Sequence[str]) -> str:
    rng = random.Random(3)
    numeric = [f"f{i:03d}" for i in range(n_features) if i % 10 != 9]
    lines = ["rules:"]
    for i in range(RULES):
        a, b = rng.sample(numeric, 2)
        lines += [
            f"  - id: growth_{i}",
            "    when:",
            "      all:",
            f"        - {{field: {a}, gte: {rng.uniform(0.2, 0.8):.2f}}}",
            f"        - {{field: {b}, lt: {rng.uniform(0.2, 0.8):.2f}}}",
            f"    then: [{{boost: {rng.choice(list(action_ids))}, by: 1.1, reason: loyal_member}}]",
        ]
    return "\n".join(lines) + "\n"


def customer_values(rng: np.random.Generator, n_features: int) -> np.ndarray:
    """Random model rows: numbers in [0, 1), categories as codes 0-2."""
    values = rng.random((CUSTOMERS, n_features))
    categorical = [i for i in range(n_features) if i % 10 == 9]
    values[:, categorical] = np.floor(values[:, categorical] * 3)
    return values


def train_model(model_dir: Path, values: np.ndarray, action_ids: Sequence[str], schema_version: str) -> None:
    """A model of the right shape: labels from a few features and the action, so the trees really split."""
    rng = np.random.default_rng(5)
    n_features = values.shape[1]
    rows = values[rng.integers(0, len(values), 2_000)]
    actions = rng.integers(0, len(action_ids), len(rows)).astype(np.float64)
    logit = 2.0 * rows[:, 0] - 1.5 * rows[:, min(1, n_features - 1)] + 0.1 * (actions % 7) - 2.0
    labels = (rng.random(len(rows)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    names = [f"f{i:03d}" for i in range(n_features)] + ["action"]
    categorical = [f"f{i:03d}" for i in range(n_features) if i % 10 == 9] + ["action"]
    params = {
        "objective": "binary",
        "num_leaves": LEAVES,
        "min_data_in_leaf": 5,
        "learning_rate": 0.05,
        "num_threads": 1,
        "verbose": -1,
        "seed": 5,
    }
    data = lgb.Dataset(np.column_stack([rows, actions]), labels, feature_name=names, categorical_feature=categorical)
    booster = lgb.train(params, data, num_boost_round=TREES)
    card = ModelCard(
        version=f"growth-{n_features}f-{len(action_ids)}a",
        feature_names=names,
        actions=list(action_ids),
        schema_version=schema_version,
        categorical_features=categorical,
    )
    card.write(model_dir, booster.model_to_string())


class CountingScorer(Scorer):
    """The flow's scorer, counting the candidates it is asked to score (what 'candidate actions' means here)."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.version = inner.version
        self.scored: list[int] = []

    def score(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        self.scored.append(len(action_ids))
        return self.inner.score(values, action_ids)

    def explain(self, values: Mapping[str, Any], action_id: str, k: int) -> list[tuple[str, float]]:
        return self.inner.explain(values, action_id, k)


@dataclass(frozen=True)
class GrowthRow:
    axis: str
    actions: int
    features: int
    candidates_p50: float
    latency: Latency
    degraded: int = 0


def measure_size(redis_url: str, n_actions: int, n_features: int, decisions: int, axis: str) -> GrowthRow:
    work = Path(tempfile.mkdtemp(prefix="nba-growth-"))
    try:
        messages = Settings(_env_file=None).messages_path
        languages = yaml.safe_load(messages.read_text(encoding="utf-8"))["languages"]
        (work / "policies").mkdir()
        schema_path = work / "schema.yaml"
        schema_path.write_text(yaml.safe_dump(schema_document(n_features), allow_unicode=True))
        catalogue = catalogue_document(n_actions, languages)
        catalogue_path = work / "actions.yaml"
        catalogue_path.write_text(yaml.safe_dump(catalogue, allow_unicode=True))
        action_ids = list(catalogue["actions"])
        (work / "policies" / "growth.yaml").write_text(rules_document(n_features, action_ids))
        values = customer_values(np.random.default_rng(n_features), n_features)
        schema = FeatureSchema.load(schema_path)
        train_model(work / "model", values, action_ids, schema.version)

        config = RedisStoreConfig(url=redis_url, timeout_ms=5000)
        client = connect(config)
        now = time.time()
        prefix = f"growth-{n_actions}a-{n_features}f-"  # each size its own customers: nothing else is touched
        profiles = [
            {"customer_id": f"{prefix}{c:05d}"}
            | {
                f.name: (f.values[int(v)] if f.type == "category" else f"{v:.4f}")
                for f, v in zip(schema.features, values[c], strict=True)
            }
            for c in range(CUSTOMERS)
        ]
        RedisOnlineStore(client, config).write_profiles(profiles, written_at=now)
        settings = Settings(
            _env_file=None,
            redis_url=redis_url,
            schema_path=schema_path,
            catalogue_path=catalogue_path,
            policy_dir=work / "policies",
            model_dir=work / "model",
            data_dir=work / "data",
        )
        flow = build_flow(settings, client, config, *definitions(settings))
        counting = CountingScorer(flow.strategy.scorer)
        flow.install(flow.strategy.with_models(counting))
        rng = random.Random(9)

        def request(i: int) -> DecisionRequest:
            return DecisionRequest(
                customer_id=f"{prefix}{rng.randrange(CUSTOMERS):05d}",
                touchpoint=TOUCHPOINT,
                context={},
                request_id=f"growth-{n_actions}-{n_features}-{i}",
                max_actions=3,
            )

        for i in range(min(200, decisions)):
            flow.decide(request(-1 - i))
        counting.scored.clear()
        samples = []
        degraded = 0
        wall = time.perf_counter()
        for i in range(decisions):
            started = time.perf_counter()
            decision = flow.decide(request(i))
            samples.append(time.perf_counter() - started)
            degraded += bool(decision.degraded_codes)
        wall = time.perf_counter() - wall
        flow.decision_log.close()
        client.close()
        name = f"{n_actions} actions, {n_features} features"
        candidates = float(np.median(counting.scored))
        return GrowthRow(axis, n_actions, n_features, candidates, Latency.of(name, samples, wall), degraded)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(redis_url: str, decisions: int) -> list[GrowthRow]:
    rows = [measure_size(redis_url, a, FIXED_FEATURES, decisions, "actions") for a in ACTION_SIZES]
    rows += [measure_size(redis_url, FIXED_ACTIONS, f, decisions, "features") for f in FEATURE_SIZES]
    return rows


def render(rows: Sequence[GrowthRow], decisions: int) -> str:
    lines = [
        "## How the cost grows: candidate actions and features",
        "",
        f"In-process on `DecisionFlow` over a real Redis, {decisions:,} sequential decisions per row after a warm-up,",
        "on a synthetic schema, catalogue, rules and model generated for each size (`benchmarks/growth.py`).",
        HELD_FIXED,
        "",
        "| grows | actions | features | candidates scored p50 | Decide p50 ms | p99 ms | p50 vs first row | degraded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for axis in ("actions", "features"):
        first = None
        for row in (r for r in rows if r.axis == axis):
            first = first or row
            lines.append(
                f"| {axis} | {row.actions} | {row.features} | {row.candidates_p50:.0f} | {row.latency.p50:.3f} "
                f"| {row.latency.p99:.3f} | {row.latency.p50 / first.latency.p50:.2f}x | {row.degraded} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1000)
    args = parser.parse_args()
    with RedisServer(Path(tempfile.mkdtemp(prefix="nba-growth-redis-"))) as server:
        print(render(measure(server.url, args.decisions), args.decisions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
