"""The embedded Redis has a memory limit and evicts nothing: filled by real decisions, it refuses writes, decisions
degrade and are spooled, outcomes answer UNAVAILABLE (retry), health says NOT_SERVING, and once there is room again
every answered decision and every acknowledged outcome is in the log: nothing acknowledged is lost."""

from __future__ import annotations

import time
import uuid

import grpc
import redis
from grpc_health.v1 import health_pb2

from decision.app import Service
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_keys import KeyLayout
from features.redis_store import RedisOnlineStore
from tests.helpers import overall_health, service_settings
from training.population import generate_population

KEYS = KeyLayout()
MAXMEMORY_MB = 4  # Redis starts at ~1 MB; a decision with its outcome takes ~12 KB of it


def test_an_embedded_redis_filled_by_decisions_loses_nothing_acknowledged(demo_model_dir, tmp_path):
    settings = service_settings(
        "", demo_model_dir, tmp_path / "data", redis_maxmemory_mb=MAXMEMORY_MB, redis_retry_after_ms=100
    )
    with Service.start(settings) as service, grpc.insecure_channel(service.grpc.target) as channel:
        assert service.embedded_redis is not None
        client = redis.Redis.from_url(service.embedded_redis.url, decode_responses=True)
        config = client.config_get("maxmemory*")
        assert (config["maxmemory"], config["maxmemory-policy"]) == (str(MAXMEMORY_MB << 20), "noeviction")
        store = service.flow.store
        assert isinstance(store, RedisOnlineStore)
        store.write_profiles(generate_population(50, now=time.time()), written_at=time.time())
        stub = pb_grpc.DecisionServiceStub(channel)

        answered: list[str] = []
        acknowledged: set[str] = set()
        refused = degraded = 0
        for i in range(3000):
            reply = stub.Decide(
                pb.DecideRequest(customer_id=f"cust-{i % 50:06d}", touchpoint=pb.WEB, request_id=uuid.uuid4().hex),
                timeout=5,
            )
            answered.append(reply.decision_id)
            degraded += reply.degraded
            if not reply.actions:  # the contact policy may hold every offer back
                continue
            outcome = pb.RecordOutcomeRequest(
                decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=pb.IGNORED
            )
            try:
                acknowledged.add(stub.RecordOutcome(outcome, timeout=5).outcome_id)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                refused += 1
            if refused >= 20 and degraded >= 20:
                break
        assert refused >= 20 and degraded >= 20, f"Redis never filled: {len(answered)} decisions"
        assert overall_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING) == (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )

        client.config_set("maxmemory", 0)  # room again: the next write replays the spool
        assert overall_health(channel, health_pb2.HealthCheckResponse.SERVING) == health_pb2.HealthCheckResponse.SERVING
        time.sleep(0.2)  # past redis_retry_after_ms
        stub.Decide(pb.DecideRequest(customer_id="cust-000001", touchpoint=pb.WEB), timeout=5)
        service.flush_log()
        logged = {entry["decision_id"] for _, entry in client.xrange(KEYS.decisions_stream)}
        outcomes = {entry_id for entry_id, _ in client.xrange(KEYS.outcomes_stream)}  # an outcome's id is its entry's
        client.close()
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered decisions never logged"
    assert acknowledged <= outcomes, f"{len(acknowledged - outcomes)} acknowledged outcomes lost"
