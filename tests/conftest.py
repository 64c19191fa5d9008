"""Shared fixtures: a real Redis server, the demo model trained once, and a running gRPC service."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import redis

from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings

if TYPE_CHECKING:
    from decision.app import Service
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from training.demo_model import train_demo_model
from training.population import generate_population

KEYS = KeyLayout()

TEST_POPULATION = 2_000


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
    service.flow.decision_log.flush()  # earlier tests' offers, still being written, first
    client = redis.Redis.from_url(loaded_redis.url, decode_responses=True)
    keys = list(client.scan_iter(KEYS.contacts("*"), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def forget_offers(service: Service, customer_id: str) -> None:
    """Drop the offers from a customer's contact history (a new visit), keeping declines and follow-ups."""
    service.flow.decision_log.flush()  # the offers of a decision just answered, still being written
    client = service.client
    key = KEYS.contacts(customer_id)
    offers = [f for f in client.hkeys(key) if str(f).split("|")[1] == "offered"]
    if offers:
        client.hdel(key, *offers)


def service_settings(redis_url: str, model_dir: Path, data_dir: Path, **overrides: object) -> Settings:
    """Settings of a test service. Exploration is off unless a test asks for it: tests that expect the model's
    own first choice would otherwise fail on the share of decisions that explore. Redis may take 250 ms before a
    decision degrades (production: 25 ms): a test machine busy with other work must not turn the decisions a
    test checks into degraded ones; the tests of degradation set their own, shorter timeout."""
    return Settings(
        _env_file=None,
        port=0,
        http_port=0,
        redis_url=redis_url,
        model_dir=model_dir,
        data_dir=data_dir,
        **{"exploration_share": 0.0, "redis_timeout_ms": 250.0, **overrides},
    )


@contextlib.contextmanager
def service_on_its_own_redis(
    model_dir: Path, tmp_path: Path, customers: int = 50, **overrides: object
) -> Iterator[tuple[Service, RedisServer]]:
    """A service over a Redis of its own, with ``customers`` demo profiles: a test may stop, pause or fill that
    Redis and harm nobody else. ``overrides`` are settings (see service_settings)."""
    from decision.app import Service

    server = RedisServer(tmp_path / "redis").start()
    try:
        with Service.start(service_settings(server.url, model_dir, tmp_path / "data", **overrides)) as service:
            store = service.flow.store
            assert isinstance(store, RedisOnlineStore)
            store.write_profiles(generate_population(customers, now=time.time()), written_at=time.time())
            yield service, server
    finally:
        server.stop()


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
