"""What several test modules share: a test service and its settings, customers and flights of their own, the
health a channel reports, decisions in the log and the spool, and ``nba serve --workers`` processes.

Fixtures live in conftest.py; plain functions and constants a test calls live here, so no test module imports
another's.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import orjson
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from decision.decision_log import unpack
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.scoring import LightGBMScorer
from decision.settings import Settings
from decision.strategy import RuleFiles, Strategy, load_strategy
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore
from features.schema import FeatureSchema
from training.population import generate_population

if TYPE_CHECKING:
    from decision.app import Service

KEYS = KeyLayout()
SCHEMA = FeatureSchema.load()
NOW = time.time()  # when the tests started: PASSENGER's incident was five days before


# A test service

TEST_POPULATION = 2_000


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


def forget_offers(service: Service, customer_id: str) -> None:
    """Drop the offers from a customer's contact history (a new visit), keeping declines and follow-ups."""
    service.flush_log()  # the offers of a decision just answered, still being written
    client = service.client
    key = KEYS.contacts(customer_id)
    offers = [f for f in client.hkeys(key) if str(f).split("|")[1] == "offered"]
    if offers:
        client.hdel(key, *offers)


# Customers, flights and rules of a test's own


def fresh_flight() -> str:
    """Each test uses its own flight, so upgrade seats taken by one test never affect another."""
    n = uuid.uuid4().int
    return f"{chr(65 + n % 26)}{chr(65 + n // 26 % 26)}{n // 676 % 10_000:04d}"


def recovery_passengers(service: Service, count: int) -> list[str]:
    """Passengers who each qualify for a service-recovery upgrade."""
    store = service.flow.store
    assert isinstance(store, RedisOnlineStore)
    now = time.time()
    ids = [f"ife-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    store.write_profiles(
        [
            {
                "customer_id": c,
                "domain": "airline",
                "tier": "gold",
                "predicted_ltv": "15000",
                "last_incident_type": "ife_broken",
                "last_incident": repr(now - 5 * 86_400),
                "last_incident_flight": "AZ611",
                "last_incident_long_haul": "1",
            }
            for c in ids
        ],
        written_at=now,
    )
    return ids


PASSENGER = {
    "domain": "airline",
    "tier": "gold",
    "predicted_ltv": "15000",
    "last_incident_type": "ife_broken",
    "last_incident": repr(NOW - 5 * 86_400),
    "last_incident_flight": "AZ611",
    "last_incident_long_haul": "1",
    "last_name": "Rossi",
    "title": "Ms",
}


def strategy_from(demo_model_dir: Path, policy_dir: Path) -> Strategy:
    settings = Settings(_env_file=None)
    files = RuleFiles(policy_dir, settings.catalogue_path, settings.messages_path)
    return load_strategy(files, SCHEMA, LightGBMScorer(demo_model_dir, SCHEMA))


# What a service reports and logs


def overall_health(channel: grpc.Channel, becomes: int, timeout_s: float = 10.0) -> int:
    """The overall ("") health status once it is ``becomes``, or the last one seen after ``timeout_s``."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while (status := stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status) != becomes:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return status


def a_spooled_decision(stub, redis_client, decision_id: str) -> bytes:
    """A spool line as a server process writes it while Redis is down, made from a real logged decision."""
    stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.IVR, request_id=decision_id), timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for _, entry in redis_client.xrevrange(KEYS.decisions_stream, count=50):
            if entry["request_id"] == decision_id:
                decision = orjson.loads(unpack(entry["decision"]))
                decision["decision_id"] = f"spooled-{decision_id}"
                return orjson.dumps({"decision": decision, "inputs": orjson.loads(unpack(entry["inputs"]))})
        time.sleep(0.1)
    raise AssertionError("the decision was not logged")


def logged(client: redis.Redis, decision_id: str) -> bool:
    return any(e["decision_id"] == decision_id for _, e in client.xrange(KEYS.decisions_stream))


def client_info_pid(url: str) -> str:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return str(client.info("server")["process_id"])
    finally:
        client.close()


# nba serve --workers N

START_TIMEOUT_S = 120.0  # two cores shared with everything else: starting a process may be slow


@dataclass
class Served:
    """A running ``nba serve --workers N`` and what it announced."""

    process: subprocess.Popen[str]
    target: str
    pids: list[int]
    redis_url: str
    http_url: str
    log: queue.Queue[str] = field(default_factory=queue.Queue)

    def wait_for_log(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.log.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, "the supervisor exited"
                continue
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no log line matching {pattern!r}")


def serve_workers(workers: int, redis_url: str, model_dir: Path, data_dir: Path) -> Served:
    env = {
        **os.environ,
        "NBA_REDIS_URL": redis_url,
        "NBA_MODEL_DIR": str(model_dir),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_PORT": "0",
        "NBA_HTTP_PORT": "0",
        "NBA_RULES_RELOAD_S": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "serve", "--workers", str(workers)],
        env=env,
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr, stdout = process.stderr, process.stdout
    assert stderr is not None and stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    announced = stdout.readline()
    teller = stdout.readline()
    found = re.match(r"serving on (\S+) with \d+ processes, pids ([\d, ]+) \(Redis (\S+)\)", announced)
    assert found, f"not serving: {announced!r}"
    http = re.search(r"HTTP/JSON API: (\S+)/v1/", teller)
    assert http, teller
    pids = [int(pid) for pid in found.group(2).split(", ")]
    return Served(process, found.group(1), pids, found.group(3), http.group(1), lines)


def stop(served: Served) -> None:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=60)


def gone(pid: int, timeout_s: float = 30.0) -> bool:
    """True once no process ``pid`` is left (a zombie counts as gone: it runs nothing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # the second: reaped between the open and the read
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def decide(target: str, customer: str = "demo-italian") -> pb.DecideReply:
    with grpc.insecure_channel(target) as channel:
        # wait_for_ready: a connection the kernel gave to a process just killed is retried on another one
        return pb_grpc.DecisionServiceStub(channel).Decide(
            pb.DecideRequest(customer_id=customer, touchpoint=pb.IVR), timeout=30, wait_for_ready=True
        )


def ship_log_command(redis_url: str, log_dir: Path | str, *args: str) -> list[str]:
    """``nba ship-log`` over a Redis and a log directory, as a command line."""
    return [
        sys.executable,
        "-m",
        "decision.cli",
        "ship-log",
        "--redis-url",
        redis_url,
        "--log-dir",
        str(log_dir),
        *args,
    ]


@contextlib.contextmanager
def running_demo(env: dict[str, str], *args: str) -> Iterator[list[str]]:
    """``nba demo`` as a user starts it, on free ports (``env`` gives its data and model directories): the lines it
    printed before it said it serves; stopped with SIGTERM, as Ctrl-C stops it, and checked to end cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "demo", *args],
        env=env | {"NBA_PORT": "0", "NBA_HTTP_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        for line in process.stdout:
            printed.append(line.rstrip("\n"))
            if "Ctrl-C stops" in line:
                break
        assert printed and "Ctrl-C stops" in printed[-1], "the demo stopped before it served"
        yield printed
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_S) == 0
