"""Champion against challenger, and a shadow's estimates, from an export of the service's own log."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from training.live_traffic import live_comparison


def log(**columns: list) -> pa.Table:
    return pa.table(columns)


def test_each_arm_is_its_observed_mean_and_the_difference_has_an_honest_interval():
    rng = np.random.default_rng(3)
    champion = (rng.random(4_000) < 0.10).astype(int)
    challenger = (rng.random(1_000) < 0.16).astype(int)
    table = log(
        rank=[1] * 5_000 + [2] * 10,
        arm=["champion"] * 4_000 + ["challenger"] * 1_000 + ["champion"] * 10,
        model_version=["v1"] * 4_000 + ["v2"] * 1_000 + ["v1"] * 10,
        action=["a"] * 5_010,
        accepted=[*champion, *challenger, *([1] * 10)],  # the rank-2 rows must not count
    )
    result = live_comparison(table, "accepted", propensity_column=None)
    assert result is not None and result.shadow is None
    arms = {a.arm: a for a in result.arms}
    assert arms["champion"].decisions == 4_000 and arms["champion"].model_versions == ["v1"]
    assert arms["champion"].mean_outcome.estimate == pytest.approx(champion.mean())
    assert arms["challenger"].mean_outcome.estimate == pytest.approx(challenger.mean())
    diff = result.challenger_minus_champion
    assert diff is not None and diff.estimate == pytest.approx(challenger.mean() - champion.mean())
    assert diff.low < 0.06 < diff.high and diff.low > 0  # the true difference, and a real one
    assert result.to_json()["challenger_minus_champion"]["estimate"] == pytest.approx(diff.estimate)


def test_a_shadow_is_credited_only_where_it_agrees_weighted_by_the_logged_propensity():
    table = log(
        rank=[1, 1, 1, 1],
        arm=["champion"] * 4,
        action=["a", "b", "a", "b"],
        shadow_action=["a", "a", "b", "b"],
        shadow_model_version=["v2"] * 4,
        propensity=[0.5, 0.25, 0.5, 0.8],
        accepted=[1, 1, 0, 1],
    )
    result = live_comparison(table, "accepted")
    assert result is not None and result.shadow is not None
    assert result.shadow_agreement == 0.5 and result.shadow_model_versions == ["v2"]
    # IPS: mean of 1[agree] * r / p = (1/0.5 + 0 + 0 + 1/0.8) / 4; SNIPS: sum(w r) / sum(w)
    assert result.shadow.ips.estimate == pytest.approx((2 + 1.25) / 4)
    assert result.shadow.snips.estimate == pytest.approx((2 + 1.25) / (2 + 1.25))


def test_a_log_with_one_arm_and_no_shadow_or_not_from_the_service_says_nothing():
    assert live_comparison(log(arm=["champion"] * 3, accepted=[0, 1, 0]), "accepted") is None
    assert live_comparison(log(action=["a"], accepted=[1]), "accepted") is None
