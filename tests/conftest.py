"""Shared fixtures: a real Redis server, the demo model trained once, and a running gRPC service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import redis

from decision.pb import decision_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from decision.app import Service
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from tests.helpers import TEST_POPULATION, service_on_its_own_redis, service_settings
from training.demo_model import train_demo_model
from training.population import generate_population

KEYS = KeyLayout()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server process for the whole run, on a free port."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture()
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained by the project's own training code, once per run."""
    return train_demo_model(tmp_path_factory.mktemp("model"), n_customers=5_000)


@pytest.fixture(scope="session")
def population() -> list[dict[str, str]]:
    return generate_population(TEST_POPULATION, now=time.time())


@pytest.fixture(scope="session")
def loaded_redis(redis_server: RedisServer, population: list[dict[str, str]]) -> RedisServer:
    """The Redis server with the demo population in it."""
    config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
    client = connect(config)
    RedisOnlineStore(client, config).write_profiles(population, written_at=time.time())
    client.close()
    return redis_server


@pytest.fixture()
def fresh_contact_history(loaded_redis: RedisServer, service: Service) -> None:
    """Forget every customer's contact history (offers made, declines): each test starts a new visit, so
    the contact policy's offer limits do not carry over from one test to the next."""
    service.flush_log()  # earlier tests' offers, still being written, first
    client = redis.Redis.from_url(loaded_redis.url, decode_responses=True)
    keys = list(client.scan_iter(KEYS.contacts("*"), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture()
def own_service(demo_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Service, RedisServer]]:
    """A service over its own Redis that degrades fast: Redis may take 50 ms, and is skipped 200 ms after a failure."""
    with service_on_its_own_redis(demo_model_dir, tmp_path, redis_timeout_ms=50, redis_retry_after_ms=200) as own:
        yield own


@pytest.fixture(scope="session")
def service(
    loaded_redis: RedisServer, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The real service: gRPC on a free port over the shared Redis."""
    from decision.app import Service

    settings = service_settings(loaded_redis.url, demo_model_dir, tmp_path_factory.mktemp("data"))
    with Service.start(settings) as running:
        yield running


@pytest.fixture(scope="session")
def channel(service: Service) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(service.grpc.target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.DecisionServiceStub:
    return pb_grpc.DecisionServiceStub(channel)
