"""Publishing models to a running service: no restart, no failed call, never two models in one decision; a model
that cannot serve is refused and the live one keeps serving; champion/challenger splits and shadow runs."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import orjson
import pytest
import redis

from decision.app import Service
from decision.cli import main
from decision.decision_log import unpack
from decision.deployment import customer_share
from decision.models import Registry
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.scoring import LightGBMScorer
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.schema import FeatureSchema
from tests.helpers import service_settings
from training import loop
from training.demo_model import train_demo_model

KEYS = KeyLayout()

CUSTOMERS = [f"cust-{i:06d}" for i in range(1, 400)]


@pytest.fixture(scope="module")
def registry(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry with two real models that score differently: the demo model, and one trained on less data."""
    other = train_demo_model(tmp_path_factory.mktemp("other-model"), n_customers=1_500, seed=11, num_boost_round=40)
    registry = Registry(tmp_path_factory.mktemp("registry"))
    for version, directory in (("v-demo", demo_model_dir), ("v-small", other)):
        card = json.loads((directory / "model.json").read_text()) | {"version": version}
        registry.add(version, {"model.txt": (directory / "model.txt").read_text(), "model.json": json.dumps(card)})
    return registry


@pytest.fixture()
def publishing_service(loaded_redis: RedisServer, demo_model_dir: Path, registry: Registry, tmp_path: Path):
    settings = service_settings(
        loaded_redis.url, demo_model_dir, tmp_path / "data", registry_dir=registry.root, rules_reload_s=0.1
    )
    with Service.start(settings) as service:
        yield service
    (registry.root / "live.json").unlink(missing_ok=True)  # the next test starts with nothing published


@pytest.fixture()
def decide(publishing_service: Service) -> Iterator[Callable[..., pb.DecideResponse]]:
    with grpc.insecure_channel(publishing_service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)

        def call(customer: str | None = None) -> pb.DecideResponse:
            customer = customer or random.choice(CUSTOMERS)
            request = pb.DecideRequest(customer_id=customer, touchpoint=pb.CHECKIN_AGENT, request_id=uuid.uuid4().hex)
            return stub.Decide(request, timeout=5)

        yield call


def forget_contacts(service: Service) -> None:
    """A new visit for everyone: the contact policy's offer limits would otherwise hold back the offers of
    customers the earlier tests of this module decided for."""
    service.flush_log()
    keys = list(service.client.scan_iter(KEYS.contacts("*"), count=1000))
    if keys:
        service.client.delete(*keys)


def wait_for_model(decide: Callable[..., pb.DecideResponse], version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if decide().model_version == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"the service never served {version}")


def test_publish_and_rollback_under_load_lose_no_call_and_never_mix_models(
    decide, publishing_service, registry, demo_model_dir
):
    replies: list[pb.DecideResponse] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                replies.append(decide())
            except grpc.RpcError as exc:  # any failed call fails the test
                errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        demo_version = json.loads((demo_model_dir / "model.json").read_text())["version"]
        wait_for_model(decide, demo_version)
        loop.publish("v-small", registry=registry.root, note="smaller model")
        wait_for_model(decide, "v-small")
        loop.publish("v-demo", registry=registry.root)
        wait_for_model(decide, "v-demo")
        loop.rollback(registry=registry.root, note="back")
        wait_for_model(decide, "v-small")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    served = {r.model_version for r in replies}
    assert {"v-small", "v-demo", demo_version} <= served
    assert publishing_service.rules_watcher.model_swaps == 3

    # Every decision is replayed from its logged inputs with the model it names: each candidate's logged
    # probability is that model's, to the last bit, so no decision mixed two models.
    publishing_service.flush_log()
    schema = FeatureSchema.load()
    scorers = {
        "v-small": LightGBMScorer(registry.resolve("v-small"), schema),
        "v-demo": LightGBMScorer(registry.resolve("v-demo"), schema),
        demo_version: LightGBMScorer(demo_model_dir, schema),
    }
    ids = {r.decision_id for r in replies}
    client = redis.Redis.from_url(publishing_service.redis_url)
    replayed = 0
    for _entry, fields in client.xrange(KEYS.decisions_stream, min=f"{int(time.time() * 1000) - 600_000}"):
        decision = orjson.loads(unpack(fields[b"decision"]))
        if decision["decision_id"] not in ids:
            continue
        inputs = orjson.loads(unpack(fields[b"inputs"]))
        values = schema.parse(inputs["features"], decision["decided_at_ms"] / 1000.0)
        actions = list(decision["candidates"])
        expected = scorers[decision["model_version"]].score(values, actions)
        logged = [decision["candidates"][a][0] for a in actions]
        assert logged == pytest.approx(expected.tolist(), abs=1e-12, rel=0)
        replayed += 1
    client.close()
    assert replayed >= len(ids) * 0.95  # decisions of the last moments may still be on their way


def test_a_model_that_cannot_serve_is_refused_by_publish_and_by_a_running_server(
    decide, publishing_service, registry, capsys
):
    loop.publish("v-small", registry=registry.root)
    wait_for_model(decide, "v-small")
    # A model file cut short: nba publish refuses it, and nothing changes.
    good = (registry.resolve("v-demo") / "model.txt").read_text()
    card = json.loads((registry.resolve("v-demo") / "model.json").read_text())
    cut = f"v-cut-{uuid.uuid4().hex[:6]}"
    registry.add(cut, {"model.txt": good[: len(good) // 2], "model.json": json.dumps(card | {"version": cut})})
    assert main(["publish", cut, "--registry", str(registry.root)]) == 2
    assert f"model {cut}: model.txt is incomplete" in capsys.readouterr().err
    # A model for another feature schema (one feature renamed), published past the check, reaches the server:
    # the server refuses it too, and keeps deciding with the model it had.
    other = f"v-other-schema-{uuid.uuid4().hex[:6]}"
    names = [n if n != "tier" else "loyalty_tier" for n in card["feature_names"]]
    text = good.replace("feature_names=" + " ".join(card["feature_names"]), "feature_names=" + " ".join(names))
    other_card = card | {"version": other, "feature_names": names}
    registry.add(other, {"model.txt": text, "model.json": json.dumps(other_card)})
    registry.publish(other)  # no check: as if the file were changed behind the registry's back
    deadline = time.monotonic() + 20
    while publishing_service.rules_watcher.last_model_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "does not match the feature schema" in (publishing_service.rules_watcher.last_model_error or "")
    assert {decide().model_version for _ in range(20)} == {"v-small"}
    # Rolling back to a servable deployment is picked up again.
    loop.rollback(registry=registry.root)
    loop.publish("v-demo", registry=registry.root)
    wait_for_model(decide, "v-demo")
    assert publishing_service.rules_watcher.last_model_error is None


def test_a_challenger_decides_for_its_share_of_customers_and_always_the_same_ones(decide, registry):
    loop.publish("v-demo", challenger="v-small", share=0.3, registry=registry.root)
    wait_for_model(decide, "v-small")
    seen: dict[str, set[tuple[str, str]]] = {}
    for customer in CUSTOMERS[:150] * 2:
        reply = decide(customer)
        seen.setdefault(customer, set()).add((reply.policy.arm, reply.model_version))
    for customer, arms in seen.items():
        expected = ("challenger", "v-small") if customer_share(customer) < 0.3 else ("champion", "v-demo")
        assert arms == {expected}, customer
    share = sum(("challenger", "v-small") in arms for arms in seen.values()) / len(seen)
    assert 0.15 < share < 0.45


def test_a_shadow_challenger_scores_every_decision_but_never_decides(decide, registry, publishing_service):
    loop.publish("v-demo", challenger="v-small", shadow=True, registry=registry.root)
    deadline = time.monotonic() + 30
    while decide().policy.shadow_model_version != "v-small" and time.monotonic() < deadline:
        time.sleep(0.05)
    forget_contacts(publishing_service)
    replies = [decide(customer) for customer in CUSTOMERS[:60]]
    assert {(r.model_version, r.policy.arm, r.policy.shadow_model_version) for r in replies} == {
        ("v-demo", "champion", "v-small")
    }
    offered = [r for r in replies if r.actions]
    assert offered and all(r.policy.shadow_action_id for r in offered), [
        (r.explanation.suppressed, r.degraded_codes) for r in replies[:3]
    ]


def test_models_marks_what_serves(registry, capsys):
    loop.publish("v-demo", challenger="v-small", share=0.1, registry=registry.root)
    assert main(["models", "--registry", str(registry.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0].split(), {line.split()[1]: line for line in lines[1:] if line.startswith("*")}
    assert header[:2] == ["version", "trained"], "a table with a header, not a Python dict"
    assert rows["v-demo"].split()[2] == "(live)" and rows["v-small"].split()[2] == "(challenger)"
    assert lines[-1] == "* serves: v-demo (challenger v-small deciding 10% of customers)"
    assert main(["models", "--registry", str(registry.root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {v["version"]: v["serving"] for v in listed["versions"]}["v-small"] == "challenger"
    (registry.root / "live.json").unlink()
