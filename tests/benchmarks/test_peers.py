"""The peers' set-up, checked without installing them: files, definitions, requests, install commands."""

from __future__ import annotations

import ast
import json
import math
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from benchmarks.peers import FeastPeer, MLServerPeer, PeerStartError, PeerVenv, WrongAnswer, feast_peer, mlserver_peer
from benchmarks.peers import v2_protocol as v2
from benchmarks.peers.process import ServerProcess
from decision.catalogue import Catalogue
from features.redis_server import free_port
from features.schema import FeatureSchema

SCHEMA = FeatureSchema.load()
FEATURES = [f.name for f in SCHEMA.features]


@pytest.fixture()
def feast(population, tmp_path) -> FeastPeer:
    return FeastPeer(population, SCHEMA, root=tmp_path / "peers")


@pytest.fixture(scope="module")
def mlserver(population, demo_model_dir, tmp_path_factory) -> MLServerPeer:
    return MLServerPeer(
        population, demo_model_dir, SCHEMA, Catalogue.load().action_ids, root=tmp_path_factory.mktemp("peers")
    )


# ---- Feast ---------------------------------------------------------------------------------------------------


def test_feature_store_yaml_points_feast_at_the_given_redis(feast):
    repo = feast.write_repo("redis://127.0.0.1:6390/0", written_at=time.time())
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    assert config["provider"] == "local"
    assert config["online_store"] == {"type": "redis", "connection_string": "127.0.0.1:6390,db=0"}
    assert Path(config["registry"]).parent == repo / "data"


def test_definitions_parse_and_name_every_schema_feature_with_its_type(feast):
    repo = feast.write_repo("redis://127.0.0.1:6390/0", written_at=time.time())
    tree = ast.parse((repo / "features.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]

    def keywords(call: ast.Call) -> dict[str, ast.expr]:
        return {k.arg: k.value for k in call.keywords if k.arg}

    fields = {ast.literal_eval(keywords(c)["name"]): keywords(c)["dtype"].id for c in calls if c.func.id == "Field"}
    assert list(fields) == FEATURES
    assert fields["tier"] == "String" and fields["age"] == "Int64" and fields["churn_risk"] == "Float64"
    assert fields["in_arrears"] == "Bool" and fields["last_incident"] == "Float64"
    (entity,) = [c for c in calls if c.func.id == "Entity"]
    assert ast.literal_eval(keywords(entity)["join_keys"]) == ["customer_id"]
    (source,) = [c for c in calls if c.func.id == "FileSource"]
    assert Path(ast.literal_eval(keywords(source)["path"])) == repo / "data" / "customers.parquet"
    (view,) = [c for c in calls if c.func.id == "FeatureView"]
    assert ast.literal_eval(keywords(view)["name"]) == feast_peer.FEATURE_VIEW


def test_parquet_source_holds_every_customer_with_typed_values(feast, population):
    written_at = 1_790_000_000.0
    repo = feast.write_repo("redis://127.0.0.1:6390/0", written_at=written_at)
    table = pq.read_table(repo / "data" / "customers.parquet")
    assert table.num_rows == len(population)
    assert table.column_names == ["customer_id", "event_timestamp", *FEATURES]
    rows = table.to_pylist()
    assert [r["customer_id"] for r in rows] == [p["customer_id"] for p in population]
    assert {r["event_timestamp"].timestamp() for r in rows} == {written_at}
    for row, customer in zip(rows[:200], population[:200], strict=True):
        for feature in SCHEMA.features:
            raw = customer[feature.name]
            if raw == "" and feature.type not in ("category", "text"):
                assert row[feature.name] is None, feature.name
            elif feature.type in ("number", "timestamp"):
                assert math.isclose(row[feature.name], float(raw)), feature.name
            elif feature.type == "integer":
                assert row[feature.name] == int(float(raw)), feature.name
            elif feature.type == "boolean":
                assert row[feature.name] is (raw == "1"), feature.name
            else:
                assert row[feature.name] == raw, feature.name


def test_request_body_asks_for_every_feature_of_one_customer():
    body = json.loads(feast_peer.request_body("cust-000042", SCHEMA))
    assert body == {
        "features": [f"{feast_peer.FEATURE_VIEW}:{name}" for name in FEATURES],
        "entities": {"customer_id": ["cust-000042"]},
    }


def _answer(customer_id: str, features: list[str], status: str = "PRESENT") -> dict:
    names = ["customer_id", *features]
    return {
        "metadata": {"feature_names": names},
        "results": [
            {"values": [customer_id if n == "customer_id" else 1.0], "statuses": [status], "event_timestamps": [""]}
            for n in names
        ],
    }


def test_an_answer_must_hold_that_customer_and_every_feature():
    values = feast_peer.check_answer(_answer("cust-000001", FEATURES), "cust-000001", SCHEMA)
    assert set(values) == {"customer_id", *FEATURES}
    with pytest.raises(WrongAnswer, match="asked for cust-000002"):
        feast_peer.check_answer(_answer("cust-000001", FEATURES), "cust-000002", SCHEMA)
    with pytest.raises(WrongAnswer, match="differ from the schema"):
        feast_peer.check_answer(_answer("cust-000001", FEATURES[:-1]), "cust-000001", SCHEMA)
    with pytest.raises(WrongAnswer, match="not found"):
        feast_peer.check_answer(_answer("cust-000001", FEATURES, "NOT_FOUND"), "cust-000001", SCHEMA)
    with pytest.raises(WrongAnswer, match="not a get-online-features answer"):
        feast_peer.check_answer({"detail": "Internal Server Error"}, "cust-000001", SCHEMA)


def test_feast_serves_on_loopback_from_the_repo(feast):
    command = feast.serve_command(5123)
    assert command[0] == str(feast.venv.executable("feast"))
    assert command[1:3] == ["--chdir", str(feast.repo)]
    assert command[3:] == ["serve", "--host", "127.0.0.1", "--port", "5123", "--no-access-log"]


# ---- MLServer ------------------------------------------------------------------------------------------------


def test_model_directory_is_what_mlserver_start_expects(mlserver, demo_model_dir):
    models = mlserver.write_models(http_port=9001, grpc_port=9002, metrics_port=9003)
    model_dir = models / mlserver_peer.MODEL_NAME
    settings = json.loads((model_dir / "model-settings.json").read_text())
    assert settings["name"] == mlserver_peer.MODEL_NAME
    assert settings["implementation"] == "mlserver_lightgbm.LightGBMModel"
    assert (model_dir / settings["parameters"]["uri"]).read_bytes() == (demo_model_dir / "model.txt").read_bytes()
    assert settings["parameters"]["version"] == json.loads((demo_model_dir / "model.json").read_text())["version"]
    server = json.loads((models / "settings.json").read_text())
    assert server == {"host": "127.0.0.1", "http_port": 9001, "grpc_port": 9002, "metrics_port": 9003}
    in_process = mlserver_peer.server_settings(9001, 9002, 9003, parallel_workers=0)
    assert in_process["parallel_workers"] == 0


def test_candidate_rows_are_the_flow_s_rows_for_eight_actions(mlserver):
    actions = Catalogue.load().action_ids
    for i in (0, 1, 7):
        candidates = mlserver_peer.candidate_actions(i, actions)
        assert len(candidates) == len(set(candidates)) == mlserver_peer.CANDIDATES
        assert set(candidates) <= set(actions)
        assert mlserver_peer.candidate_actions(i, actions) == candidates  # the same every run
    rows = mlserver.rows(0)
    assert rows.shape == (mlserver_peer.CANDIDATES, len(SCHEMA.model_features) + 1)
    np.testing.assert_array_equal(rows[:, :-1], np.tile(rows[0, :-1], (rows.shape[0], 1)))


def test_infer_request_is_one_fp64_tensor_of_the_rows_nan_included(mlserver):
    rows = mlserver.rows(0).copy()
    rows[0, 0] = math.nan
    request = v2.ModelInferRequest.FromString(mlserver_peer.infer_request(rows).SerializeToString())
    assert request.model_name == mlserver_peer.MODEL_NAME
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("input-0", "FP64", list(rows.shape))
    np.testing.assert_array_equal(np.array(tensor.contents.fp64_contents).reshape(rows.shape), rows)


def test_scores_come_from_contents_or_raw_bytes_and_must_be_one_per_row():
    response = v2.ModelInferResponse(model_name=mlserver_peer.MODEL_NAME)
    output = response.outputs.add(name="predict", datatype="FP64", shape=[3])
    output.contents.fp64_contents.extend([0.1, 0.2, 0.3])
    np.testing.assert_array_equal(mlserver_peer.scores_of(response, 3), [0.1, 0.2, 0.3])
    with pytest.raises(WrongAnswer, match="expected 8 scores"):
        mlserver_peer.scores_of(response, 8)
    raw = v2.ModelInferResponse()
    raw.outputs.add(name="predict", datatype="FP64", shape=[2, 1])
    raw.raw_output_contents.append(np.array([0.5, 0.25], dtype="<f8").tobytes())
    np.testing.assert_array_equal(mlserver_peer.scores_of(raw, 2), [0.5, 0.25])


# ---- Installing and running ----------------------------------------------------------------------------------


def test_install_commands_pin_every_package_into_the_peer_s_own_venv(feast, mlserver):
    for peer in (feast, mlserver):
        venv = peer.venv
        create, pip, packages = venv.install_commands()
        assert create[-1] == str(venv.dir) and venv.dir.parts[-2:] == (peer.name, "venv")
        assert pip[0] == packages[0] == str(venv.dir / "bin" / "python")
        requirements = [arg for arg in [*pip, *packages] if "==" in arg]
        assert requirements == [pip[-1], *venv.requirements]
        assert all(not arg.startswith("-") or arg in ("-m", "--quiet", "--disable-pip-version-check") for arg in pip)
    assert feast.venv.requirements == ("feast[redis]==0.67.0",)
    assert [r.split("==")[0] for r in mlserver.venv.requirements] == [
        "mlserver",
        "mlserver-lightgbm",
        "lightgbm",
        "uvloop",
    ]
    assert feast.venv.dir != mlserver.venv.dir


def test_a_requirement_without_a_pinned_version_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pinned"):
        PeerVenv("feast", ("feast[redis]>=0.60",), tmp_path)


def test_install_is_skipped_while_the_stamp_matches_and_redone_when_the_pins_change(tmp_path):
    venv = PeerVenv("tiny", ("nothing-real==1.0",), tmp_path)
    assert not venv.installed
    (venv.bin).mkdir(parents=True)
    venv.python.symlink_to(sys.executable)
    (venv.dir / ".nba-installed.json").write_text(
        json.dumps({"requirements": ["nothing-real==1.0"], "install_seconds": 12.5})
    )
    assert venv.installed and venv.install() == 0.0 and venv.first_install_seconds == 12.5
    assert not PeerVenv("tiny", ("nothing-real==2.0",), tmp_path).installed


def test_a_server_process_is_stopped_with_the_children_it_forked(tmp_path):
    port = free_port()
    child = f"import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler)"
    child += ".serve_forever()"
    parent = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {child!r}]).wait()"
    server = ServerProcess("parent and child", [sys.executable, "-c", parent], tmp_path / "log", cwd=tmp_path)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return response.status == 200

    server.start(ready, timeout_s=30)
    assert server.startup_seconds is not None
    server.stop()
    with pytest.raises(OSError):
        ready()


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    with pytest.raises(PeerStartError, match="exited with 3(.|\n)*no model here"):
        ServerProcess("broken", command, tmp_path / "log").start(lambda: False, timeout_s=30)
