"""What the rules cost per decision, and how that grows with the number of rules.

    python -m benchmarks.rules_bench [--facts 3000]

Each decision is one durable-rules ``assert_fact`` per ruleset of up to 50 rules (one for the shipped rules;
durable refuses a fact that more than ~60 rules of one ruleset match). This measures, in-process, for the
shipped rule files and for them plus generated rules (100, 500, 2,000 more):
building the fact from a customer's features and contact history, the one evaluation, and eligibility as
the flow runs it (catalogue, directives, fallbacks). Facts come from the demo population.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from decision.catalogue import Catalogue
from decision.domain import Touchpoint
from decision.eligibility import EligibilityPolicy
from decision.explanation import Narrator
from decision.settings import Settings
from features.schema import FeatureSchema
from rules.engine import DEFAULT_POLICY_DIR, RulesEngine
from training.population import generate_population

EXTRA_RULES = (0, 100, 500, 2000)
_NUMERIC = ("predicted_ltv", "churn_risk", "flights_12m", "long_haul_share", "tenure_years", "balance", "age")


def generated_rules(count: int, actions: list[str], seed: int = 3) -> str:
    """``count`` plausible rules: two numeric conditions each, a boost or an exclusion of one action."""
    rng = random.Random(seed)
    lines = ["rules:"]
    for i in range(count):
        a, b = rng.sample(_NUMERIC, 2)
        verb = rng.choice(["boost", "exclude"])
        extra = ", by: 1.1" if verb == "boost" else ""
        lines += [
            f"  - id: generated_{i}",
            "    when:",
            "      all:",
            f"        - {{field: {a}, gte: {rng.randint(1, 50)}}}",
            f"        - {{field: {b}, lt: {rng.randint(1, 5000)}}}",
            f"    then: [{{{verb}: {rng.choice(actions)}{extra}, reason: loyal_member}}]",
        ]
    return "\n".join(lines) + "\n"


Row = tuple[int, int, int, float, float, float, float, float, float]


def measure(facts: int) -> list[Row]:
    settings = Settings(_env_file=None)
    schema = FeatureSchema.load(settings.schema_path)
    catalogue = Catalogue.load(settings.catalogue_path)
    narrator = Narrator(settings.messages_path, schema)
    now = time.time()
    population = generate_population(facts, now=now)
    customers = [schema.parse({k: v for k, v in p.items() if k != "customer_id"}, now) for p in population]
    touchpoints = list(Touchpoint)
    rows = []
    for extra in EXTRA_RULES:
        work = Path(tempfile.mkdtemp(prefix="nba-rules-bench-"))
        try:
            shutil.copytree(DEFAULT_POLICY_DIR, work / "policies")
            if extra:
                (work / "policies" / "zz_generated.yaml").write_text(generated_rules(extra, catalogue.action_ids))
            engine = RulesEngine(work / "policies", catalogue.action_ids, schema)
            policy = EligibilityPolicy(catalogue, engine, narrator.languages)
            fact_us, evaluate_us, eligibility_us, fired = [], [], [], []
            today = dt.date.today()
            for i, values in enumerate(customers):
                touchpoint = touchpoints[i % len(touchpoints)]
                started = time.perf_counter()
                fact = policy.fact(values, touchpoint, {"flight": "AZ610"}, {}, True)
                built = time.perf_counter()
                fired.append(len(engine.evaluate(fact).fired))
                evaluated = time.perf_counter()
                policy.evaluate(fact, touchpoint, today)
                decided = time.perf_counter()
                fact_us.append((built - started) * 1e6)
                evaluate_us.append((evaluated - built) * 1e6)
                eligibility_us.append((decided - evaluated) * 1e6)
            rows.append(
                (
                    len(engine.rule_ids),
                    len(engine.policies.rules),
                    len(engine.policies.ruleset_definitions()),
                    statistics.median(fired),
                    statistics.median(fact_us),
                    statistics.median(evaluate_us),
                    _p99(evaluate_us),
                    statistics.median(eligibility_us),
                    _p99(eligibility_us),
                )
            )
            del engine, policy
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def render(rows: list[Row], facts: int) -> str:
    lines = [
        "## Rules: what they cost per decision, as they grow",
        "",
        f"In-process, {facts} facts from the demo population, every touchpoint in turn; the shipped rule files,",
        "then with generated rules added (two numeric conditions, a boost or an exclusion each, so many fire).",
        "One durable-rules `assert_fact` per ruleset of up to 50 compiled rules. Eligibility = the evaluation",
        "plus catalogue, directives and fallbacks, as the flow runs it. `python -m benchmarks.rules_bench`.",
        "",
        "| rules (compiled) | asserts per decision | rules fired p50 | build fact p50 us "
        "| evaluate p50 / p99 us | eligibility p50 / p99 us |",
        "|---|---|---|---|---|---|",
    ]
    for rules, compiled, asserts, fired, fact, evaluate50, evaluate99, eligible50, eligible99 in rows:
        lines.append(
            f"| {rules} ({compiled}) | {asserts} | {fired:.0f} | {fact:.0f} | {evaluate50:.0f} / {evaluate99:.0f} "
            f"| {eligible50:.0f} / {eligible99:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=int, default=3000)
    args = parser.parse_args()
    print(render(measure(args.facts), args.facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
