"""Idempotent retries, capacity that is never oversold, outcomes that are never lost, the contact policy."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from decision.pb import decision_pb2 as pb
from features.contact_history import window_count
from features.redis_keys import KeyLayout
from features.redis_store import RedisOnlineStore
from tests.helpers import a_spooled_decision, forget_offers, fresh_flight, logged, recovery_passengers

KEYS = KeyLayout()

pytestmark = pytest.mark.usefixtures("fresh_contact_history")


def test_a_retry_with_the_same_request_id_returns_the_same_decision_and_takes_one_seat(stub, redis_client):
    flight = fresh_flight()
    request = pb.DecideRequest(
        customer_id="demo-ife-gold",
        touchpoint=pb.CHECKIN_KIOSK,
        context={"flight": flight},
        request_id=f"kiosk-7-{uuid.uuid4().hex}",
    )
    first = stub.Decide(request, timeout=5)
    retries = [stub.Decide(request, timeout=5) for _ in range(3)]
    assert {r.decision_id for r in retries} == {first.decision_id}
    assert not first.answered_before and all(r.answered_before for r in retries)
    for retry in retries:
        retry.answered_before = False
    assert all(r == first for r in retries)
    pool = KEYS.capacity("upgrade_first_class", f"{flight}:{dt.date.today().isoformat()}")
    assert int(redis_client.get(pool)) == 1  # 2 seats, one taken
    logged = [
        f for _, f in redis_client.xrevrange(KEYS.decisions_stream, count=1000) if f["request_id"] == request.request_id
    ]
    assert len(logged) == 1


def test_concurrent_check_ins_never_oversell_the_last_upgrade_seats(stub, service, redis_client):
    flight = fresh_flight()
    passengers = recovery_passengers(service, 8)

    def check_in(customer: str) -> pb.DecideResponse:
        return stub.Decide(
            pb.DecideRequest(
                customer_id=customer,
                touchpoint=pb.CHECKIN_KIOSK,
                context={"flight": flight},
                request_id=uuid.uuid4().hex,
                max_actions=20,
            ),
            timeout=10,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(check_in, passengers))
    upgraded = [r for r in replies if r.actions and r.actions[0].action_id == "upgrade_first_class"]
    assert len(upgraded) == 2  # the catalogue gives each flight 2 upgrade seats
    assert int(redis_client.get(KEYS.capacity("upgrade_first_class", f"{flight}:{dt.date.today().isoformat()}"))) == 0
    for reply in replies:
        if reply not in upgraded:
            assert ("upgrade_first_class", "capacity_exhausted") in {
                (s.action_id, s.reason_code) for s in reply.explanation.suppressed
            }
            # the next best recovery instead, and a letter that confirms it, not the upgrade that did not happen
            first = reply.actions[0]
            assert (first.action_id, first.mandatory) == ("bonus_points_recovery", True)
            assert [(f.kind, f.action_id) for f in reply.follow_ups] == [("apology_letter", "bonus_points_recovery")]


def test_outcomes_are_stored_once_and_logged(stub, redis_client):
    reply = stub.Decide(
        pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.CHECKIN_AGENT, context={"flight": fresh_flight()}),
        timeout=5,
    )
    action = reply.actions[0].action_id
    request = pb.RecordOutcomeRequest(decision_id=reply.decision_id, action_id=action, outcome=pb.ACCEPTED)
    first = stub.RecordOutcome(request, timeout=5)
    again = stub.RecordOutcome(request, timeout=5)
    assert not first.duplicate and again.duplicate and again.outcome_id == first.outcome_id
    entries = [
        f for _, f in redis_client.xrevrange(KEYS.outcomes_stream, count=1000) if f["decision_id"] == reply.decision_id
    ]
    assert len(entries) == 1
    assert entries[0]["outcome"] == "ACCEPTED" and entries[0]["action_id"] == action
    assert entries[0]["model_version"] == reply.model_version
    assert 0 < float(entries[0]["propensity"]) <= 1


def test_an_offer_declined_twice_in_30_days_is_suppressed(stub, service):
    store = service.flow.store
    assert isinstance(store, RedisOnlineStore)
    customer = f"decliner-{uuid.uuid4().hex[:8]}"
    store.write_profiles(
        [{"customer_id": customer, "domain": "airline", "tier": "gold", "lounge_visits_12m": "12"}],
        written_at=time.time(),
    )

    def ask() -> pb.DecideResponse:
        return stub.Decide(
            pb.DecideRequest(
                customer_id=customer,
                touchpoint=pb.CHECKIN_AGENT,
                context={"flight": fresh_flight()},
                max_actions=20,
            ),
            timeout=5,
        )

    for _ in range(2):
        forget_offers(service, customer)  # visits on different days: only the declines count
        reply = ask()
        assert "lounge_pass" in [a.action_id for a in reply.actions]
        stub.RecordOutcome(
            pb.RecordOutcomeRequest(decision_id=reply.decision_id, action_id="lounge_pass", outcome=pb.DECLINED),
            timeout=5,
        )
    forget_offers(service, customer)
    third = ask()
    assert "lounge_pass" not in [a.action_id for a in third.actions]
    assert ("lounge_pass", "declined_twice_30d") in {(s.action_id, s.reason_code) for s in third.explanation.suppressed}


def test_mandatory_service_recovery_bypasses_the_contact_policy(stub, service):
    customer = recovery_passengers(service, 1)[0]
    for _ in range(2):
        reply = stub.Decide(
            pb.DecideRequest(customer_id=customer, touchpoint=pb.CHECKIN_AGENT, context={"flight": fresh_flight()}),
            timeout=5,
        )
        assert reply.actions[0].action_id == "upgrade_first_class"
        stub.RecordOutcome(
            pb.RecordOutcomeRequest(
                decision_id=reply.decision_id, action_id="upgrade_first_class", outcome=pb.DECLINED
            ),
            timeout=5,
        )
    third = stub.Decide(
        pb.DecideRequest(customer_id=customer, touchpoint=pb.CHECKIN_AGENT, context={"flight": fresh_flight()}),
        timeout=5,
    )
    assert third.actions[0].action_id == "upgrade_first_class" and third.actions[0].mandatory


@pytest.mark.parametrize(
    ("change", "code", "text"),
    [
        ({"decision_id": "not-a-decision"}, grpc.StatusCode.INVALID_ARGUMENT, "decision_id"),
        ({"decision_id": "0" * 32}, grpc.StatusCode.NOT_FOUND, "decision_id"),
        ({"action_id": "no_such_action"}, grpc.StatusCode.INVALID_ARGUMENT, "action_id"),
        (
            {"outcome": pb.OUTCOME_UNSPECIFIED},
            grpc.StatusCode.INVALID_ARGUMENT,
            "outcome: must be one of ACCEPTED",
        ),
        ({"outcome": 42}, grpc.StatusCode.INVALID_ARGUMENT, "outcome"),
    ],
)
def test_bad_outcomes_are_refused_naming_the_field(stub, change, code, text):
    reply = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
    request = pb.RecordOutcomeRequest(
        decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=pb.ACCEPTED
    )
    for key, value in change.items():
        setattr(request, key, value)
    with pytest.raises(grpc.RpcError) as caught:
        stub.RecordOutcome(request, timeout=5)
    assert caught.value.code() == code
    assert text in caught.value.details()


def test_a_spool_replayed_twice_logs_each_decision_once(stub, service, redis_client, tmp_path):
    # A replay cut short by Redis going away again is repeated whole: what was already stored is skipped.
    ids = [f"twice-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    lines = b"".join(a_spooled_decision(stub, redis_client, i) + b"\n" for i in ids)
    first = tmp_path / "first" / "decision-spool-0.jsonl"
    first.parent.mkdir()
    first.write_bytes(lines[: lines.index(b"\n") + 1])  # the first replay got as far as one decision
    again = tmp_path / "again" / "decision-spool-0.jsonl"
    again.parent.mkdir()
    again.write_bytes(lines)

    decision_log = service.flow.decision_log
    assert decision_log.replay_spool_files(first.parent) == 1
    assert decision_log.replay_spool_files(again.parent) == 3
    entries = [e["decision_id"] for _, e in redis_client.xrange(KEYS.decisions_stream)]
    assert all(entries.count(f"spooled-{i}") == 1 for i in ids)
    assert all(logged(redis_client, f"spooled-{i}") for i in ids)
    assert again.read_bytes() == b"" and first.read_bytes() == b""


def test_an_ignored_offer_accepted_later_is_recorded_and_a_final_outcome_never_changes(stub, redis_client):
    reply = stub.Decide(
        pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.CHECKIN_AGENT, context={"flight": fresh_flight()}),
        timeout=5,
    )
    action = reply.actions[0].action_id

    def record(outcome: int) -> pb.RecordOutcomeResponse:
        request = pb.RecordOutcomeRequest(decision_id=reply.decision_id, action_id=action, outcome=outcome)
        return stub.RecordOutcome(request, timeout=5)

    ignored = record(pb.IGNORED)
    assert record(pb.IGNORED) == pb.RecordOutcomeResponse(outcome_id=ignored.outcome_id, duplicate=True)
    accepted = record(pb.ACCEPTED)  # the customer came back to it
    assert not accepted.duplicate and accepted.outcome_id != ignored.outcome_id
    assert record(pb.ACCEPTED) == pb.RecordOutcomeResponse(outcome_id=accepted.outcome_id, duplicate=True)
    for changed in (pb.DECLINED, pb.IGNORED):
        with pytest.raises(grpc.RpcError) as caught:
            record(changed)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details() == (
            f"outcome: decision {reply.decision_id} action {action} already has ACCEPTED recorded; "
            "an outcome once accepted or declined cannot change"
        )
    entries = [f for _, f in redis_client.xrange(KEYS.outcomes_stream) if f["decision_id"] == reply.decision_id]
    assert [(e["outcome"], e.get("supersedes")) for e in entries] == [("IGNORED", None), ("ACCEPTED", "IGNORED")]


def test_an_ignored_offer_declined_later_counts_as_a_decline(stub, service, redis_client):
    reply = stub.Decide(
        pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.CHECKIN_AGENT, context={"flight": fresh_flight()}),
        timeout=5,
    )
    action = reply.actions[0].action_id
    for outcome in (pb.IGNORED, pb.DECLINED):
        stub.RecordOutcome(
            pb.RecordOutcomeRequest(decision_id=reply.decision_id, action_id=action, outcome=outcome), timeout=5
        )
    declines = redis_client.hget(KEYS.contacts("demo-italian"), f"d|declined|{action}|")
    today = int(time.time() // 86_400)
    assert declines is not None and window_count(declines, today - 1, today) == 1  # the ignore did not count
    with pytest.raises(grpc.RpcError) as caught:
        stub.RecordOutcome(
            pb.RecordOutcomeRequest(decision_id=reply.decision_id, action_id=action, outcome=pb.ACCEPTED), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already has DECLINED recorded" in caught.value.details()
