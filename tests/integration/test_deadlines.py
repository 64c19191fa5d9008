"""Redis calls are bounded by what is left of the caller's deadline, not only by the Redis timeout: a deadline
shorter than that timeout still reads the features, and a Redis that stops answering is waited for only as long as
the deadline allows, so the caller gets a degraded decision in time rather than DEADLINE_EXCEEDED."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from decision.app import Service
from decision.decision_log import RedisDecisionLog
from decision.domain import DecisionRequest, Touchpoint
from decision.flow import DecisionFlow, FlowLimits
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from features.memory_store import MemoryOnlineStore
from features.redis_client import CircuitBreaker, connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisStoreConfig
from tests.helpers import PASSENGER, SCHEMA, fresh_flight, service_on_its_own_redis, strategy_from

KEYS = KeyLayout()

REDIS_TIMEOUT_S = 1.0  # longer than the callers' deadlines below
DEADLINE_S = 0.5


@pytest.fixture()
def slow_timeout_service(demo_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Service, RedisServer]]:
    with service_on_its_own_redis(demo_model_dir, tmp_path, redis_timeout_ms=REDIS_TIMEOUT_S * 1000) as own:
        yield own


def test_a_deadline_shorter_than_the_redis_timeout_still_reads_the_features(slow_timeout_service):
    """The read once was skipped whenever less than the whole Redis timeout was left (feature_store_skipped):
    with the production 25 ms timeout, every caller with a deadline under 25 ms was decided without features."""
    service, _ = slow_timeout_service
    with grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        reply = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=DEADLINE_S)
    assert not reply.degraded, reply.degraded_reason
    assert reply.features.found


def test_a_stopped_redis_is_waited_for_only_as_long_as_the_deadline_allows(slow_timeout_service):
    """SIGSTOP: Redis takes connections but never answers. Each call gets what is left of its deadline (the
    Redis timeout is twice as long) and is answered in time, degraded, without a seat taken blind; the same
    request_id once Redis answers again gets that same decision back, and no seat was taken for it."""
    service, server = slow_timeout_service
    assert server.pid is not None
    flight = fresh_flight()
    check_in = pb.DecideRequest(
        customer_id="demo-ife-gold",
        touchpoint=pb.CHECKIN_KIOSK,
        context={"flight": flight},
        request_id=f"kiosk-{uuid.uuid4().hex[:8]}",
    )
    with grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)  # connections warm
        os.kill(server.pid, signal.SIGSTOP)
        try:
            replies = [stub.Decide(check_in, timeout=DEADLINE_S) for _ in range(2)]
        finally:
            os.kill(server.pid, signal.SIGCONT)
        for reply in replies:
            assert reply.degraded and "feature_store_unavailable" in reply.degraded_codes, reply.degraded_reason
            assert "upgrade_first_class" not in [a.action_id for a in reply.actions]
        assert replies[1].decision_id == replies[0].decision_id

        again = stub.Decide(check_in, timeout=5)
    assert again.decision_id == replies[0].decision_id
    assert [a.action_id for a in again.actions] == [a.action_id for a in replies[0].actions]
    client = redis.Redis.from_url(server.url, decode_responses=True)
    pools = (KEYS.capacity("*", f"{flight}:*"), KEYS.capacity_holders("*", f"{flight}:*"))
    assert [key for pattern in pools for key in client.keys(pattern)] == []  # no seat was taken for the check-in
    client.close()


def test_a_commit_that_takes_a_seat_waits_for_a_stopped_redis_only_until_the_deadline(demo_model_dir, tmp_path):
    """The features are read (from memory here), the upgrade takes a seat, and the log's Redis stops answering:
    the commit once waited its whole Redis timeout, past the caller's deadline. Now the answer comes by the
    deadline, degraded, with the actions that need no seat, and the circuit breaker stays closed (the deadline,
    not Redis, cut the call short)."""
    server = RedisServer(tmp_path / "redis").start()
    config = RedisStoreConfig(url=server.url, timeout_ms=REDIS_TIMEOUT_S * 1000)
    client = connect(config)
    store = MemoryOnlineStore()
    store.write_profiles([{"customer_id": "p1", **PASSENGER}], time.time())
    breaker = CircuitBreaker(retry_after_s=60.0)
    decision_log = RedisDecisionLog(client, ttl_s=3600, breaker=breaker)
    flow = DecisionFlow(
        store=store,
        schema=SCHEMA,
        strategy=strategy_from(demo_model_dir, Settings(_env_file=None).policy_dir),
        decision_log=decision_log,
        limits=FlowLimits(feature_max_age_s=7 * 86_400.0, explain_top_features=3),
    )

    def check_in(request_id: str) -> DecisionRequest:
        deadline = time.monotonic() + DEADLINE_S
        return DecisionRequest("p1", Touchpoint.CHECKIN_KIOSK, {"flight": fresh_flight()}, request_id, 5, deadline)

    assert flow.decide(check_in("warm")).actions[0].action_id == "upgrade_first_class"  # Redis answering
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        request = check_in("stopped")
        decision = flow.decide(request)
        answered = time.monotonic()
    finally:
        os.kill(server.pid, signal.SIGCONT)
        decision_log.close()
        client.close()
        server.stop()
    assert answered < request.deadline, f"answered {answered - request.deadline:.3f} s past the deadline"
    assert "decision_log_unavailable" in decision.degraded_codes
    assert "upgrade_first_class" not in [a.action_id for a in decision.actions]
    assert not breaker.open
