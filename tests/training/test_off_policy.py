"""Off-policy estimators: exact on the uniform-random Open Bandit log, bounded on the BTS log, unbiased in simulation.

The Open Bandit samples (ZOZOTOWN, 10,000 rows each, 80 items) sit in ../shared/data/open_bandit beside the
repository; the random log was written by a uniform policy, so its observed click rate is the uniform policy's
true value, and the BTS log of the same site, with propensities down to 4.5e-5, must give it back.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from features.schema import FeatureSchema
from training.log_import import ImportedLog, LogColumns, import_log
from training.off_policy import DEFAULT_MAX_WEIGHT, Estimate, difference, evaluate_policy, self_normalised

OPEN_BANDIT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "open_bandit"
COLUMNS = LogColumns(action="item_id", outcome="click", propensity="propensity_score")
SCHEMA = FeatureSchema.load()
ITEMS = 80


def _open_bandit(policy: str) -> ImportedLog:
    path = OPEN_BANDIT / policy / "all.csv"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the Open Bandit sample is missing: {path}")
        pytest.skip(f"the Open Bandit sample is not beside the repository ({path})")
    return import_log(path, COLUMNS, SCHEMA)


@pytest.fixture(scope="module")
def random_log() -> ImportedLog:
    return _open_bandit("random")


@pytest.fixture(scope="module")
def bts_log() -> ImportedLog:
    return _open_bandit("bts")


def uniform(log: ImportedLog) -> np.ndarray:
    """pi(a_i | x_i) of the uniform-random policy over the 80 items."""
    return np.full(len(log), 1.0 / ITEMS)


def item_click_rates(log: ImportedLog) -> dict[str, float]:
    """A simple reward model: each item's click rate, smoothed towards the overall rate."""
    overall = float(log.outcomes.mean())
    return {
        item: float((log.outcomes[log.actions == item].sum() + overall * 20) / ((log.actions == item).sum() + 20))
        for item in log.action_ids
    }


def test_the_sample_imports_with_its_categorical_text_features(random_log, bts_log):
    assert len(random_log) == len(bts_log) == 10_000
    assert random_log.columns.time == "timestamp"
    assert len(random_log.action_ids) == ITEMS
    kinds = {c.name: c.kind for c in random_log.encoding.columns}
    assert kinds["user_feature_0"] == "category"  # hashed text
    assert kinds["user-item_affinity_0"] == "number"
    assert "" not in kinds  # the unnamed index column is not a feature
    assert random_log.propensities is not None and set(random_log.propensities.tolist()) == {1 / ITEMS}
    assert bts_log.propensities is not None and bts_log.propensities.min() < 1e-4


def test_uniform_policy_on_the_uniform_log_is_exactly_its_click_rate(random_log):
    observed = float(random_log.outcomes.mean())
    assert observed == 38 / 10_000
    value = evaluate_policy("uniform", random_log.outcomes, random_log.propensities, uniform(random_log))
    assert value.ips.estimate == pytest.approx(observed, rel=1e-12, abs=0)
    assert value.snips.estimate == pytest.approx(observed, rel=1e-12, abs=0)
    assert value.ips.contains(observed) and value.ips.low > 0
    assert value.effective_sample_size == pytest.approx(len(random_log))


def test_doubly_robust_with_a_simple_reward_model_recovers_the_uniform_log_click_rate(random_log, bts_log):
    # Reward model fitted on the other log, so it is not tuned to the rows it corrects.
    rates = item_click_rates(bts_log)
    q = np.array([rates.get(a, 0.0) for a in random_log.actions])
    direct = np.full(len(random_log), np.mean([rates.get(str(i), 0.0) for i in range(ITEMS)]))
    value = evaluate_policy(
        "uniform", random_log.outcomes, random_log.propensities, uniform(random_log), direct=direct, predicted_logged=q
    )
    observed = float(random_log.outcomes.mean())
    assert value.dr.contains(observed)
    assert value.dr.estimate == pytest.approx(observed, abs=0.3 * observed)


def test_logging_policy_on_the_bts_log_is_its_observed_click_rate(bts_log):
    observed = float(bts_log.outcomes.mean())
    assert observed == 42 / 10_000
    # The logging policy chose each logged item with its propensity: every weight is 1, whatever how small.
    value = evaluate_policy(
        "bts",
        bts_log.outcomes,
        bts_log.propensities,
        bts_log.propensities,
        direct=np.zeros(len(bts_log)),
        predicted_logged=np.zeros(len(bts_log)),
    )
    for estimate in (value.ips, value.snips, value.dr):
        assert estimate.estimate == pytest.approx(observed, rel=1e-12, abs=0)
    assert value.clipped_rows == 0


def test_bts_tiny_propensities_are_clipped_and_still_give_back_the_uniform_policys_value(random_log, bts_log):
    truth = float(random_log.outcomes.mean())  # the uniform policy's value, measured on-policy
    rates = item_click_rates(random_log)
    q = np.array([rates[a] for a in bts_log.actions])
    direct = np.full(len(bts_log), np.mean(list(rates.values())))
    value = evaluate_policy(
        "uniform", bts_log.outcomes, bts_log.propensities, uniform(bts_log), direct=direct, predicted_logged=q
    )
    # Weights of up to 1/80 / 4.5e-5 = 278 are there, and the clipping takes them down to the limit.
    assert value.max_weight > DEFAULT_MAX_WEIGHT
    assert value.clipped_rows > 0
    assert value.effective_sample_size < 0.1 * len(bts_log)
    for estimate in (value.ips, value.snips, value.dr):
        assert 0.0 <= estimate.estimate <= 1.0
        assert estimate.contains(truth), estimate
        assert truth / 2 < estimate.estimate < truth * 2, estimate


def test_bts_single_item_policies_blow_up_without_clipping_and_stay_bounded_with_it(bts_log):
    observed = float(bts_log.outcomes.mean())
    unclipped, clipped, snips = [], [], []
    for item in bts_log.action_ids:
        target = (bts_log.actions == item).astype(float)
        raw = evaluate_policy(item, bts_log.outcomes, bts_log.propensities, target, max_weight=math.inf)
        kept = evaluate_policy(item, bts_log.outcomes, bts_log.propensities, target)
        unclipped.append(raw.ips.estimate)
        clipped.append(kept.ips.estimate)
        snips.append(kept.snips.estimate)
        assert kept.ips.estimate <= raw.ips.estimate
        # Each row can add at most max_weight x its outcome / n.
        assert kept.ips.estimate <= DEFAULT_MAX_WEIGHT * bts_log.outcomes[target > 0].sum() / len(bts_log)
    # One click at a tiny propensity makes an unclipped estimate many times the site's click rate...
    assert max(unclipped) > 10 * observed
    # ...clipping cuts the worst one down, and self-normalised estimates never leave the outcome's range.
    assert max(clipped) < 0.5 * max(unclipped)
    assert all(0.0 <= s <= 1.0 for s in snips if not math.isnan(s))


def test_estimators_are_unbiased_and_dr_is_tighter_on_a_simulated_bandit():
    rng = np.random.default_rng(3)
    n, k = 20_000, 4
    context = rng.random(n)
    truth = np.clip(np.stack([0.1 + 0.6 * context * (a + 1) / k for a in range(k)], axis=1), 0, 1)
    logging = np.array([0.55, 0.25, 0.15, 0.05])
    actions = rng.choice(k, size=n, p=logging)
    outcomes = (rng.random(n) < truth[np.arange(n), actions]).astype(float)
    best = np.argmax(truth, axis=1)  # always the last action
    target = (actions == best).astype(float)
    true_value = float(truth[np.arange(n), best].mean())
    value = evaluate_policy(
        "best",
        outcomes,
        logging[actions],
        target,
        direct=truth[np.arange(n), best],
        predicted_logged=truth[np.arange(n), actions],
        max_weight=math.inf,
    )
    for estimate in (value.ips, value.snips, value.dr):
        assert estimate.contains(true_value), estimate
    assert (value.dr.high - value.dr.low) < 0.9 * (value.ips.high - value.ips.low)


def test_self_normalised_estimate_ignores_the_scale_of_the_weights():
    rng = np.random.default_rng(5)
    outcomes = (rng.random(500) < 0.3).astype(float)
    weights = rng.exponential(size=500)
    once = self_normalised(outcomes, weights)
    scaled = self_normalised(outcomes, weights * 1000)
    assert scaled.estimate == pytest.approx(once.estimate)
    assert scaled.std_error == pytest.approx(once.std_error)


def test_a_policy_minus_itself_is_zero_with_a_zero_width_interval():
    rng = np.random.default_rng(9)
    outcomes = (rng.random(300) < 0.2).astype(float)
    propensities = np.full(300, 0.25)
    policy = {"target": rng.random(300) < 0.5, "direct": rng.random(300), "predicted_logged": rng.random(300)}
    for estimate in difference(outcomes, propensities, policy, policy).values():
        assert estimate == Estimate(0.0, 0.0, 0.0, 0.0)


def test_propensities_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        evaluate_policy("x", [1.0, 0.0], [0.5, 0.0], [1.0, 1.0])
