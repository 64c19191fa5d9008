"""A live.json naming a model that cannot serve (here one that makes LightGBM abort the process): every process
checks a model before serving it, a process starting then serves the last good deployment, and ``nba rollback``
refuses to restore a deployment that cannot serve."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import grpc
import pytest

from decision.app import Service
from decision.catalogue import Catalogue
from decision.cli import main
from decision.deployment import check_model
from decision.models import ModelError, Registry
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from tests.helpers import decide as decide_on
from tests.helpers import serve_workers, service_settings, stop
from training import loop

CRASH = "LightGBM crashed loading it (signal"  # SIGABRT mostly, sometimes SIGSEGV


def add_version(registry: Registry, version: str, model_dir: Path, text: str | None = None) -> None:
    card = json.loads((model_dir / "model.json").read_text()) | {"version": version}
    model = text if text is not None else (model_dir / "model.txt").read_text()
    registry.add(version, {"model.txt": model, "model.json": json.dumps(card)})


def cut_in_a_tree(text: str) -> str:
    """The model file cut in the middle of a tree, its parameters block still at the end: LightGBM aborts."""
    return text[: len(text) // 2] + "\n" + text[text.index("end of trees") :]


@pytest.fixture()
def registry(demo_model_dir: Path, tmp_path: Path) -> Registry:
    """v-good serves; v-bad makes LightGBM abort the process that loads it."""
    registry = Registry(tmp_path / "registry")
    add_version(registry, "v-good", demo_model_dir)
    add_version(registry, "v-bad", demo_model_dir, cut_in_a_tree((demo_model_dir / "model.txt").read_text()))
    return registry


def decide(service: Service) -> pb.DecideReply:
    with grpc.insecure_channel(service.grpc.target) as channel:
        return pb_grpc.DecisionServiceStub(channel).Decide(
            pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.IVR), timeout=30
        )


def test_the_bad_model_aborts_the_process_that_loads_it(registry):
    settings = Settings(_env_file=None)
    with pytest.raises(ModelError, match=r"model v-bad refused: LightGBM crashed"):
        check_model(registry.resolve("v-bad"), settings.schema_path, Catalogue.load(settings.catalogue_path).action_ids)


def test_a_service_started_on_a_bad_live_model_serves_the_last_good_deployment(
    loaded_redis, demo_model_dir, registry, tmp_path, caplog
):
    registry.publish("v-good")
    registry.publish("v-bad")  # no check: as if the file were damaged behind the registry's back
    settings = service_settings(loaded_redis.url, demo_model_dir, tmp_path / "data", registry_dir=registry.root)
    with caplog.at_level(logging.ERROR), Service.start(settings) as service:
        assert decide(service).model_version == "v-good"
        refused = [r.getMessage() for r in caplog.records if "v-bad" in r.getMessage()]
        assert refused and CRASH in refused[0] and "v-good" in refused[0], refused
        assert "v-bad" in (service.rules_watcher.last_model_error or "")
        # live.json is as it was: the refused deployment is not looked at again until it changes
        caplog.clear()
        assert service.rules_watcher.check_models() is False
        assert not [r for r in caplog.records if "refused" in r.getMessage()]


def test_without_an_earlier_good_deployment_the_default_model_serves(loaded_redis, demo_model_dir, registry, tmp_path):
    registry.publish("v-bad")
    settings = service_settings(loaded_redis.url, demo_model_dir, tmp_path / "data", registry_dir=registry.root)
    with Service.start(settings) as service:
        demo_version = json.loads((demo_model_dir / "model.json").read_text())["version"]
        assert decide(service).model_version == demo_version


def test_killed_workers_come_back_on_the_last_good_model_when_live_json_names_a_bad_one(
    loaded_redis, demo_model_dir, tmp_path
):
    data = tmp_path / "data"
    registry = Registry(data / "registry")  # NBA_DATA_DIR/registry: the servers' default
    add_version(registry, "v-good", demo_model_dir)
    add_version(registry, "v-bad", demo_model_dir, cut_in_a_tree((demo_model_dir / "model.txt").read_text()))
    registry.publish("v-good")
    served = serve_workers(2, loaded_redis.url, demo_model_dir, data)
    try:
        assert decide_on(served.target).model_version == "v-good"
        registry.publish("v-bad")
        for index, pid in enumerate(served.pids):
            os.kill(pid, signal.SIGKILL)
            served.wait_for_log(rf"server process {index} \(pid {pid}\) exited with -9", timeout_s=30)
        # Both successors start at once: their "restarted" and "serves" lines come in any order.
        serving = served.wait_for_log(r"server process \d \(pid \d+\) serves", timeout_s=90)
        second = served.wait_for_log(r"server process \d \(pid \d+\) serves", timeout_s=90)
        assert serving.group(0)[:16] != second.group(0)[:16]
        assert {decide_on(served.target).model_version for _ in range(10)} == {"v-good"}
    finally:
        stop(served)


def test_rollback_to_a_deployment_that_cannot_serve_is_refused_and_changes_nothing(registry, capsys):
    registry.publish("v-bad")  # no check
    registry.publish("v-good")
    before = (registry.root / "live.json").read_bytes()
    assert main(["rollback", "--registry", str(registry.root)]) == 2
    err = capsys.readouterr().err
    assert "v-bad" in err and CRASH in err, err
    assert (registry.root / "live.json").read_bytes() == before
    with pytest.raises(ModelError, match="v-bad"):
        loop.rollback(registry=registry.root)


def test_publish_refuses_a_model_that_aborts_lightgbm(registry, capsys):
    assert main(["publish", "v-bad", "--registry", str(registry.root)]) == 2
    assert f"model v-bad refused: {CRASH}" in capsys.readouterr().err
    assert registry.live() is None
