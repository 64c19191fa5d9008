"""Exploration: a small share of decisions puts a random eligible action first, so learning never stops.

Without it the log only ever shows what the live model already likes, and no later model can be proven better
on it. The draw is fixed by the decision id (a retry or a replay explores the same way), mandatory actions
(service recovery) are never displaced, and every decision carries the probability with which the policy put
its first action first: what off-policy estimates divide by.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from decision.arbitration import Ranked


@dataclass(frozen=True)
class Explored:
    ranking: list[Ranked]
    explored: bool
    # P(this policy puts ranking[0] first | the candidates and their scores)
    propensity: float


def explore(ranking: Sequence[Ranked], share: float, decision_id: str) -> Explored:
    """With probability ``share`` move a uniformly drawn non-mandatory candidate to the front.

    The first action's propensity is then (1 - share) for the greedy choice plus share / k for each of the k
    candidates the draw could pick. When a mandatory action leads, or fewer than two candidates could lead,
    nothing is left to chance and the propensity is 1.
    """
    ranking = list(ranking)
    if not ranking or ranking[0].mandatory or share <= 0.0:
        return Explored(ranking, False, 1.0)
    choices = [i for i, r in enumerate(ranking) if not r.mandatory]
    k = len(choices)
    if k < 2:
        return Explored(ranking, False, 1.0)
    draw, pick = _uniforms(decision_id)
    if draw < share:
        chosen = choices[min(int(pick * k), k - 1)]
        ranking.insert(0, ranking.pop(chosen))
        greedy = chosen == 0
        return Explored(ranking, True, (1.0 - share) * greedy + share / k)
    return Explored(ranking, False, (1.0 - share) + share / k)


def _uniforms(decision_id: str) -> tuple[float, float]:
    digest = hashlib.blake2b(decision_id.encode(), digest_size=16, person=b"nba-explore").digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64, int.from_bytes(digest[8:], "big") / 2.0**64
