"""The embedded default: no Redis configured, so the service starts a real redis-server of its own."""

from __future__ import annotations

import grpc
import pytest
import redis
from pydantic import ValidationError

from decision.app import Service
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from tests.helpers import service_settings


def test_service_starts_and_stops_its_own_redis(demo_model_dir, tmp_path):
    settings = service_settings("", demo_model_dir, tmp_path / "data", redis_fsync="always")
    with Service.start(settings) as service:
        assert service.embedded_redis is not None and service.embedded_redis.running
        client = redis.Redis.from_url(service.redis_url, decode_responses=True)
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
        with grpc.insecure_channel(service.grpc.target) as channel:
            reply = pb_grpc.DecisionServiceStub(channel).Decide(
                pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5
            )
        assert "unknown_customer" in reply.degraded_codes  # an empty store: nothing loaded yet
        embedded = service.embedded_redis
    assert not embedded.running
    assert (tmp_path / "data" / "redis" / "redis.log").exists()


def test_a_bad_setting_names_the_variable():
    with pytest.raises(ValidationError, match="redis_fsync"):
        Settings(_env_file=None, redis_fsync="sometimes")
