"""Every bad input is refused naming the field; Redis down or slow degrades within the deadline."""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_keys import KeyLayout
from tests.helpers import overall_health

KEYS = KeyLayout()

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def refused(stub: pb_grpc.DecisionServiceStub, request: pb.DecideRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Decide(request, timeout=5)
    return caught.value


@pytest.mark.parametrize(
    ("customer_id", "shown"),
    [("", "''"), ("bad id with spaces", "bad id"), ("x" * 10_000, "10000 characters"), ("名前", "名前")],
)
def test_malformed_customer_id(stub, customer_id, shown):
    error = refused(stub, pb.DecideRequest(customer_id=customer_id, touchpoint=pb.CHECKIN_KIOSK))
    assert error.code() == INVALID
    assert error.details().startswith("customer_id: must be 1-64 characters")
    assert shown in error.details()


@pytest.mark.parametrize("touchpoint", [0, 99, -3])
def test_unknown_touchpoint(stub, touchpoint):
    error = refused(stub, pb.DecideRequest(customer_id="demo-italian", touchpoint=touchpoint))
    assert error.code() == INVALID
    assert error.details().startswith("touchpoint: must be one of CHECKIN_KIOSK, CHECKIN_AGENT, IVR")


@pytest.mark.parametrize(
    ("context", "text"),
    [
        ({f"k{i}": "v" for i in range(33)}, "context: at most 32 entries"),
        ({"flight": "x" * 300}, "context[flight]: values are at most 256 characters"),
        ({"Flight Number": "AZ1"}, "context: key 'Flight Number' must be lower_snake_case"),
    ],
)
def test_oversized_or_malformed_context(stub, context, text):
    error = refused(stub, pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, context=context))
    assert error.code() == INVALID and text in error.details()


def test_non_utf8_context_value_is_named(channel):
    valid = pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, context={"flight": "AZ610"})
    raw = valid.SerializeToString().replace(b"AZ610", b"AZ\xff10")
    call = channel.unary_unary(
        "/nba.v1.DecisionService/Decide",
        request_serializer=None,
        response_deserializer=pb.DecideResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(raw, timeout=5)
    assert caught.value.code() == INVALID
    assert caught.value.details() == "context[flight]: must be valid UTF-8 text"


@pytest.mark.parametrize("max_actions", [-1, 21])
def test_max_actions_out_of_range(stub, max_actions):
    error = refused(stub, pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, max_actions=max_actions))
    assert error.code() == INVALID
    assert error.details() == f"max_actions: must be between 0 and 20 (0 = the default 3); got {max_actions}"


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "nba.v1.DecisionService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(iter(replies)).list_services_response.service}
    assert {"nba.v1.DecisionService", "grpc.health.v1.Health"} <= names


# -- faults: each test gets its own Redis and service, so stopping Redis harms nobody else -----------------


def test_redis_down_degrades_within_the_deadline_and_outcomes_fail_unavailable(own_service):
    service, server = own_service
    with grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        before = stub.Decide(
            pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK, context={"flight": "AZ1"}),
            timeout=5,
        )
        assert not before.degraded
        server.stop()

        started = time.monotonic()
        reply = stub.Decide(
            pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK, context={"flight": "AZ1"}),
            timeout=0.5,
        )
        assert time.monotonic() - started < 0.5
        assert reply.degraded and "feature_store_unavailable" in reply.degraded_codes
        assert "decision_log_unavailable" in reply.degraded_codes
        assert reply.actions, "a safe default decision from the context"
        assert "upgrade_first_class" not in [a.action_id for a in reply.actions]  # no seat taken blind

        with pytest.raises(grpc.RpcError) as caught:
            stub.RecordOutcome(
                pb.RecordOutcomeRequest(
                    decision_id=before.decision_id, action_id=before.actions[0].action_id, outcome=pb.ACCEPTED
                ),
                timeout=2,
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        # Redis comes back on the same port with its append-only file: service resumes, spool is replayed.
        server.start()
        time.sleep(0.3)  # past redis_retry_after_ms
        deadline = time.monotonic() + 5
        while True:
            again = stub.Decide(
                pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK, context={"flight": "AZ2"}),
                timeout=2,
            )
            if not again.degraded or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not again.degraded, again.degraded_reason
        client = redis.Redis.from_url(server.url, decode_responses=True)
        expected = {before.decision_id, reply.decision_id, again.decision_id}
        deadline = time.monotonic() + 3  # decisions are logged a moment after they are answered
        while not expected <= (logged := {f["decision_id"] for _, f in client.xrange(KEYS.decisions_stream)}):
            assert time.monotonic() < deadline, f"never logged: {expected - logged}"
            time.sleep(0.05)
        receipt = stub.RecordOutcome(
            pb.RecordOutcomeRequest(
                decision_id=before.decision_id, action_id=before.actions[0].action_id, outcome=pb.ACCEPTED
            ),
            timeout=2,
        )
        assert receipt.outcome_id
        # The decision made while Redis was down was spooled, then replayed whole: its outcome is taken too.
        spooled = stub.RecordOutcome(
            pb.RecordOutcomeRequest(
                decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=pb.DECLINED
            ),
            timeout=2,
        )
        assert spooled.outcome_id and not spooled.duplicate
        client.close()


def test_a_full_redis_is_not_healthy_and_the_outcome_of_a_spooled_decision_is_to_be_retried(own_service):
    """Redis at its maxmemory (noeviction) still answers PING and reads, but stores nothing: health once stayed
    SERVING, and the outcome of a decision waiting in the spool answered NOT_FOUND, as if it had never been made.
    Now health is NOT_SERVING while Redis takes no writes, and that outcome is UNAVAILABLE (retry) until the spool
    is replayed, then stored."""
    service, server = own_service
    client = redis.Redis.from_url(server.url, decode_responses=True)
    SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    with grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        assert overall_health(channel, SERVING) == SERVING
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        try:
            reply = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
            service.flush_log()  # written a moment after it was answered: refused, so spooled
            assert overall_health(channel, NOT_SERVING) == NOT_SERVING
            outcome = pb.RecordOutcomeRequest(
                decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=pb.ACCEPTED
            )
            with pytest.raises(grpc.RpcError) as caught:
                stub.RecordOutcome(outcome, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "spool" in (caught.value.details() or "")
        finally:
            client.config_set("maxmemory", 0)
        assert overall_health(channel, SERVING) == SERVING
        time.sleep(0.3)  # past redis_retry_after_ms: the next write to the log replays the spool
        stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
        service.flush_log()
        receipt = stub.RecordOutcome(outcome, timeout=5)
    client.close()
    assert receipt.outcome_id and not receipt.duplicate


def test_a_redis_nearly_at_its_maxmemory_is_not_healthy(own_service):
    """64 KB left: a decision's writes (~5 KB each, with their scripts' buffers) are refused within a few, while
    a small key still fits, so a write alone would find it healthy."""
    service, server = own_service
    client = redis.Redis.from_url(server.url, decode_responses=True)
    SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    with grpc.insecure_channel(service.grpc.target) as channel:
        assert overall_health(channel, SERVING) == SERVING
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 64 * 1024)
        try:
            assert client.set("a-small-key", "1")
            assert overall_health(channel, NOT_SERVING) == NOT_SERVING
        finally:
            client.config_set("maxmemory", 0)
        assert overall_health(channel, SERVING) == SERVING
    client.close()


def test_slow_redis_degrades_instead_of_waiting(own_service):
    service, server = own_service
    blocker = redis.Redis.from_url(server.url)
    sleeper = threading.Thread(target=lambda: blocker.execute_command("DEBUG", "SLEEP", "1.5"))
    with grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)  # warm
        sleeper.start()
        time.sleep(0.1)
        # Each within its deadline (gRPC enforces it); once a call (the first, or the log's writer) waited out
        # the Redis timeout, the others skip Redis instead of each waiting for it.
        replies = [
            stub.Decide(
                pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, request_id=uuid.uuid4().hex),
                timeout=0.3,
            )
            for _ in range(5)
        ]
    sleeper.join()
    blocker.close()
    assert all(r.degraded for r in replies)
    assert all("skipped after a recent failure" in r.degraded_reason for r in replies[1:])


@pytest.mark.parametrize("request_id", ["has spaces", "x" * 129, "défaut"])
def test_malformed_request_id(stub, request_id):
    error = refused(stub, pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, request_id=request_id))
    assert error.code() == INVALID
    assert error.details().startswith("request_id: must be 1-128 printable ASCII characters without spaces")
