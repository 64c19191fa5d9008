"""The sold-out loop of decision/flow.py, offline: a required action whose last seat is gone is dropped and its
``otherwise`` fallback takes its place, the ranking is made again, and the chain of fallbacks ends at an action
that needs no seat. A tiny catalogue whose seats come one to a flight, and the memory decision log."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from decision.decision_log import MemoryDecisionLog
from decision.domain import Decision, DecisionRequest, Touchpoint
from decision.flow import DecisionFlow, FlowLimits
from decision.offline import offline_flow
from decision.scoring import Scorer
from decision.settings import Settings
from decision.strategy import RuleFiles, load_strategy
from tests.helpers import SCHEMA

NOW = time.time()
LANGUAGES = ("en", "it", "zh-Hant", "zh-Hans")  # the shipped messages file's: every action speaks them


class SameForEveryone(Scorer):
    """The same acceptance probability for every action: the order comes from value and the rules alone."""

    version = "same-for-everyone"

    def score(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        return np.full(len(action_ids), 0.5)

    def explain(self, values: Mapping[str, Any], action_id: str, k: int) -> list[tuple[str, float]]:
        return []


def action(value: int, seats: int | None = None) -> dict[str, Any]:
    texts = {"agent": "offer", "screen": "offer", "voice": "offer"}
    spec: dict[str, Any] = {
        "kind": "service_recovery",
        "value": value,
        "touchpoints": ["CHECKIN_KIOSK"],
        "title": dict.fromkeys(LANGUAGES, "an offer"),
        "messages": dict.fromkeys(LANGUAGES, texts),
    }
    if seats is not None:
        spec.update(mandatory_only=True, capacity={"per": "flight", "units": seats})
    return spec


def flow_with(tmp_path: Path, then: list[dict[str, Any]]) -> tuple[DecisionFlow, MemoryDecisionLog]:
    """A flow over gold customers c1..c4, whose one rule (for gold customers) is ``then``: upgrade and lounge
    have one seat a flight, points none to run out of."""
    catalogue = tmp_path / "actions.yaml"
    actions = {"upgrade": action(400, seats=1), "lounge": action(80, seats=1), "points": action(60)}
    catalogue.write_text(yaml.safe_dump({"actions": actions}, allow_unicode=True), encoding="utf-8")
    policies = tmp_path / "policies"
    policies.mkdir()
    rule = {"id": "recovery", "description": "gold", "when": {"all": [{"field": "tier", "eq": "gold"}]}, "then": then}
    (policies / "recovery.yaml").write_text(yaml.safe_dump({"rules": [rule]}), encoding="utf-8")
    files = RuleFiles(policies, catalogue, Settings(_env_file=None).messages_path)
    offline = offline_flow(
        load_strategy(files, SCHEMA, SameForEveryone()),
        SCHEMA,
        FlowLimits(feature_max_age_s=86_400.0, explain_top_features=3),
        NOW,
    )
    offline.store.write_profiles([{"customer_id": f"c{n}", "tier": "gold"} for n in range(1, 5)], NOW)
    flow, log = offline.flow, offline.log
    return flow, log


def decide(flow: DecisionFlow, customer: str) -> Decision:
    request = DecisionRequest(customer, Touchpoint.CHECKIN_KIOSK, {"flight": "AZ777"}, f"r-{customer}", 20)
    return flow.decide(request)


def first(decision: Decision) -> tuple[str, bool]:
    return decision.actions[0].action_id, decision.actions[0].mandatory


def sold_out(decision: Decision) -> list[str]:
    return [s.action_id for s in decision.explanation.suppressed if s.reason_code == "capacity_exhausted"]


@pytest.mark.timeout(60)
def test_a_sold_out_required_action_gives_its_place_to_its_fallback(tmp_path: Path):
    flow, log = flow_with(tmp_path, [{"require": "upgrade", "otherwise": "points", "reason": "service_recovery"}])
    taken = decide(flow, "c1")
    assert first(taken) == ("upgrade", True) and sold_out(taken) == []
    assert taken.seats == (("upgrade", taken.seats[0][1]),)
    after = decide(flow, "c2")
    assert first(after) == ("points", True)
    assert sold_out(after) == ["upgrade"]
    assert "recovery_fallback" in after.actions[0].reason_codes
    assert after.seats == ()
    assert list(log.capacity_left.values()) == [0]


@pytest.mark.timeout(60)
def test_a_chain_of_sold_out_fallbacks_ends_at_the_action_that_needs_no_seat(tmp_path: Path):
    then = [
        {"require": "upgrade", "otherwise": "lounge", "reason": "service_recovery"},
        {"require": "lounge", "otherwise": "points", "reason": "service_recovery"},
    ]
    flow, log = flow_with(tmp_path, then)
    taken = decide(flow, "c1")
    assert [(a.action_id, a.mandatory) for a in taken.actions][:2] == [("upgrade", True), ("lounge", True)]
    assert list(log.capacity_left.values()) == [0, 0]
    for customer in ("c2", "c3"):  # both seats gone: each decision still ends, with the points
        decision = decide(flow, customer)
        assert [(a.action_id, a.mandatory) for a in decision.actions] == [("points", True)]
        assert sorted(sold_out(decision)) == ["lounge", "upgrade"]
        assert decision.seats == ()
