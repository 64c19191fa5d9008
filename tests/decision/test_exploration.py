"""Exploration: a share of first actions drawn at random, mandatory actions never displaced, and a propensity
that says how often each action really comes first."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from decision.arbitration import arbitrate
from decision.catalogue import Catalogue
from decision.exploration import explore

AIRLINE = ("lounge_pass", "extra_legroom_seat", "extra_bag", "fast_track")


def ranking(mandatory: frozenset[str] = frozenset()):
    catalogue = Catalogue.load()
    ids = [*AIRLINE, *sorted(mandatory)]
    return arbitrate([catalogue.actions[a] for a in ids], [0.5, 0.4, 0.3, 0.2, 0.01][: len(ids)], set(mandatory), {})


def test_each_action_comes_first_as_often_as_its_logged_propensity_says():
    ranked = ranking()
    share, n = 0.2, 20_000
    firsts: Counter[str] = Counter()
    propensity_of: dict[str, set[float]] = {}
    explored = 0
    for _ in range(n):
        result = explore(ranked, share, uuid.uuid4().hex)
        first = result.ranking[0].action.action_id
        firsts[first] += 1
        explored += result.explored
        propensity_of.setdefault(first, set()).add(round(result.propensity, 12))
        assert sorted(r.action.action_id for r in result.ranking) == sorted(AIRLINE)  # nothing lost or added
    greedy = ranked[0].action.action_id
    # One propensity per first action, as the formula gives, and each matches the observed frequency.
    assert propensity_of[greedy] == {round(1 - share + share / 4, 12)}
    for action in AIRLINE:
        (p,) = propensity_of[action]
        assert firsts[action] / n == pytest.approx(p, abs=4 * (p * (1 - p) / n) ** 0.5 + 1e-3)
    assert explored / n == pytest.approx(share, abs=0.015)


def test_a_mandatory_action_is_never_displaced_and_is_chosen_for_sure():
    ranked = ranking(frozenset({"upgrade_first_class"}))
    for _ in range(500):
        result = explore(ranked, 0.5, uuid.uuid4().hex)
        assert result.ranking == ranked and result.propensity == 1.0 and not result.explored


def test_the_draw_is_fixed_by_the_decision_id_so_a_retry_explores_alike():
    ranked = ranking()
    ids = [uuid.uuid4().hex for _ in range(200)]
    first = [explore(ranked, 0.3, i) for i in ids]
    again = [explore(ranked, 0.3, i) for i in ids]
    assert first == again
    assert any(r.explored for r in first) and not all(r.explored for r in first)


def test_nothing_is_left_to_chance_with_exploration_off_or_a_single_candidate():
    ranked = ranking()
    assert explore(ranked, 0.0, "d").ranking == ranked and explore(ranked, 0.0, "d").propensity == 1.0
    single = explore(ranked[:1], 0.5, "d")
    assert single.propensity == 1.0 and not single.explored
    assert explore([], 0.5, "d").ranking == []
