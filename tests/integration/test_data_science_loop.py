"""The data scientist's whole loop in one test, on real parts: the service decides with exploration and logs
to its own Redis -> outcomes come back (drawn from the simulated world's ground truth) -> export-log ->
train -> evaluate (trusted: the log has the policy's propensities) -> publish -> the running service decides
with the new model, without a restart."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

from decision.app import Service
from decision.cli import main
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_client import connect
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from features.schema import FeatureSchema
from tests.helpers import service_settings
from training.population import generate_population, true_accept_probability

CUSTOMERS = 1_200


@pytest.fixture()
def own_redis(tmp_path: Path):
    """A Redis of this test's own, so the exported log holds this test's decisions only."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


def test_serve_export_train_evaluate_publish_and_serve_the_new_model(own_redis, demo_model_dir, tmp_path, capsys):
    now = time.time()
    population = generate_population(CUSTOMERS, seed=23, now=now)
    config = RedisStoreConfig(url=own_redis.url, timeout_ms=5000)
    client = connect(config)
    RedisOnlineStore(client, config).write_profiles(population, written_at=now)
    client.close()
    schema = FeatureSchema.load()
    truth = {row["customer_id"]: schema.parse(row, now) for row in population}
    registry = tmp_path / "registry"
    settings = service_settings(
        own_redis.url, demo_model_dir, tmp_path / "data", registry_dir=registry, exploration_share=0.3,
        rules_reload_s=0.1,
    )  # fmt: skip
    rng = np.random.default_rng(5)

    with Service.start(settings) as service, grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        explored = 0
        for row in population:
            customer = row["customer_id"]
            airline = truth[customer]["domain"] == "airline"
            request = pb.DecideRequest(
                customer_id=customer,
                touchpoint=pb.CHECKIN_AGENT if airline else pb.BRANCH_TELLER,
                context={"flight": f"AZ{rng.integers(100, 999)}"} if airline else {},
                request_id=uuid.uuid4().hex,
            )
            reply = stub.Decide(request, timeout=5)
            if not reply.actions:
                continue
            explored += reply.policy.explored
            first = reply.actions[0].action_id
            accepted = rng.random() < true_accept_probability(truth[customer], first)
            stub.RecordOutcome(
                pb.RecordOutcomeRequest(
                    decision_id=reply.decision_id, action_id=first, outcome=pb.ACCEPTED if accepted else pb.DECLINED
                ),
                timeout=5,
            )
        assert 0.2 * CUSTOMERS < explored < 0.4 * CUSTOMERS
        service.flush_log()

        log = tmp_path / "live-log.parquet"
        assert main(["export-log", "--redis-url", own_redis.url, "--out", str(log), "--chosen-only"]) == 0
        capsys.readouterr()
        assert (
            main(
                [
                    "train",
                    "--log",
                    str(log),
                    "--action-column",
                    "action",
                    "--outcome-column",
                    "accepted",
                    "--propensity-column",
                    "propensity",
                    "--registry",
                    str(registry),
                ]
            )  # fmt: skip
            == 0
        )
        version = capsys.readouterr().out.strip().splitlines()[-1]

        report = tmp_path / "report.html"
        assert main(["evaluate", "--model", version, "--log", str(log), "--report", str(report),
                     "--registry", str(registry), "--json"]) == 0  # fmt: skip
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["model"] == version and summary["propensities"] == "logged" and summary["trusted"]
        assert summary["live_traffic"] is None  # one arm only: nothing to compare yet
        logging = summary["policies"]["logging"]["snips"]["estimate"]
        assert 0.0 < logging < 1.0
        assert "<img" in report.read_text()

        assert main(["publish", version, "--registry", str(registry), "--note", "trained on live traffic"]) == 0
        deadline = time.monotonic() + 30
        reply = None
        while time.monotonic() < deadline:
            reply = stub.Decide(pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_AGENT), timeout=5)
            if reply.model_version == version:
                break
            time.sleep(0.05)
        assert reply is not None and reply.model_version == version
