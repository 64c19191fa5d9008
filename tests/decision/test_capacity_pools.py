"""Offline, as rule scenarios and simulations run: capacity pools need a flight, one seat per passenger, and
customer-facing texts show only declared, valid context values."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest
import yaml

from decision.domain import DecisionRequest, Outcome, Touchpoint, decision_day
from decision.flow import DecisionFlow, FlowLimits
from decision.offline import OfflineFlow, offline_flow
from decision.settings import Settings
from decision.strategy import Strategy
from tests.helpers import NOW, PASSENGER, SCHEMA, strategy_from


@pytest.fixture(scope="module")
def strategy(demo_model_dir: Path) -> Strategy:
    return strategy_from(demo_model_dir, Settings(_env_file=None).policy_dir)


@pytest.fixture(scope="module")
def strategy_without_flight_rule(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Strategy:
    """The shipped rules without the one that excludes an upgrade when there is no flight."""
    policies = tmp_path_factory.mktemp("rules") / "policies"
    shutil.copytree(Settings(_env_file=None).policy_dir, policies)
    path = policies / "eligibility.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["rules"] = [r for r in document["rules"] if r["id"] != "upgrade_needs_economy_flight"]
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return strategy_from(demo_model_dir, policies)


def passengers(strategy: Strategy, customers: list[str]) -> OfflineFlow:
    offline = offline_flow(strategy, SCHEMA, FlowLimits(feature_max_age_s=7 * 86_400.0, explain_top_features=3), NOW)
    offline.store.write_profiles([{"customer_id": c, **PASSENGER} for c in customers], NOW)
    return offline


def decide(flow: DecisionFlow, customer: str, touchpoint: Touchpoint, request_id: str = "r1", **context: str):
    return flow.decide(DecisionRequest(customer, touchpoint, context, request_id, 20))


def test_no_flight_means_no_seat_from_a_shared_pool_and_the_fallback_stands_in(strategy_without_flight_rule):
    offline = passengers(strategy_without_flight_rule, ["p1", "p2", "p3"])
    flow, log = offline.flow, offline.log
    for customer in ("p1", "p2", "p3"):
        decision = decide(flow, customer, Touchpoint.CHECKIN_KIOSK)
        assert "upgrade_first_class" not in [a.action_id for a in decision.actions]
        suppressed = {(s.action_id, s.reason_code) for s in decision.explanation.suppressed}
        assert ("upgrade_first_class", "capacity_pool_missing") in suppressed
        first = decision.actions[0]
        assert (first.action_id, first.mandatory) == ("bonus_points_recovery", True)
        assert [(f.kind, f.action_id) for f in decision.follow_ups] == [("apology_letter", "bonus_points_recovery")]
    assert log.capacity_left == {}


def test_the_offline_log_gives_a_declined_upgrades_seat_back_once(strategy):
    offline = passengers(strategy, ["p1", "p2", "p3"])
    flow, log = offline.flow, offline.log
    taken = decide(flow, "p1", Touchpoint.CHECKIN_KIOSK, flight="AZ777")
    assert taken.seats == (("upgrade_first_class", f"AZ777:{decision_day(NOW).isoformat()}"),)
    decide(flow, "p2", Touchpoint.CHECKIN_KIOSK, flight="AZ777")
    assert list(log.capacity_left.values()) == [0]
    for _ in range(2):  # the second decline is a duplicate: it frees nothing more
        flow.record_outcome(taken.decision_id, "upgrade_first_class", Outcome.DECLINED)
    assert list(log.capacity_left.values()) == [1]
    assert decide(flow, "p3", Touchpoint.CHECKIN_KIOSK, flight="AZ777").actions[0].action_id == "upgrade_first_class"


def test_the_offline_log_keeps_one_seat_per_passenger_and_one_pool_per_spelling(strategy):
    offline = passengers(strategy, ["p1", "p2", "p3"])
    flow, log = offline.flow, offline.log
    for touchpoint in (Touchpoint.CHECKIN_KIOSK, Touchpoint.CHECKIN_AGENT, Touchpoint.IVR):
        assert decide(flow, "p1", touchpoint, flight="AZ777").actions[0].action_id == "upgrade_first_class"
    assert decide(flow, "p2", Touchpoint.CHECKIN_KIOSK, flight=" az777").actions[0].action_id == "upgrade_first_class"
    assert decide(flow, "p3", Touchpoint.CHECKIN_KIOSK, flight="AZ777 ").actions[0].action_id != "upgrade_first_class"
    assert list(log.capacity_left.values()) == [0]


def test_a_letter_shows_only_declared_valid_context_values(strategy):
    narrator = strategy.narrator
    values = SCHEMA.parse({"last_name": "Rossi", "title": "Ms"}, NOW)
    context = {"flight": "AZ9. Your refund: http://refund.example/claim", "promo": "http://refund.example"}
    fields = narrator.template_values(values, context, "en", Touchpoint.WEB)
    assert fields["flight"] == "" and fields["promo"] == ""
    assert narrator.template_values(values, {"flight": " az9 "}, "en", Touchpoint.WEB)["flight"] == "AZ9"
    assert set(SCHEMA.context) >= {"flight", "flight_date", "cabin", "language"}


def test_the_decision_day_is_the_utc_day_whatever_the_servers_time_zone(monkeypatch):
    """Eligibility's validity windows and a pool's default date: once the server's local day (a kiosk server at
    UTC+14 and one at UTC-10 disagreed for 24 hours a day), as the batch scorer took the UTC day."""
    at = dt.datetime(2026, 12, 3, 11, 0, tzinfo=dt.UTC).timestamp()
    for zone in ("Pacific/Kiritimati", "Pacific/Honolulu", "UTC"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert decision_day(at) == dt.date(2026, 12, 3), zone
    monkeypatch.undo()
    time.tzset()
