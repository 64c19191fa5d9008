"""The data scientist's loop through the ``nba`` command line: a demo log with known propensities and ground
truth -> train -> evaluate -> score, checked against the truth the simulation knows."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import yaml

from decision.catalogue import DEFAULT_CATALOGUE_PATH, Catalogue
from decision.cli import main
from decision.models import Registry
from decision.scoring import LightGBMScorer
from features.schema import DEFAULT_SCHEMA_PATH, FeatureSchema
from training import loop
from training.artifact import ModelArtifact
from training.demo_log import simulate_decision_log, true_probabilities
from training.demo_model import auc
from training.log_import import read_table, schema_values, write_table
from training.population import generate_population
from training.report import PLOTS

SCHEMA, CATALOGUE = FeatureSchema.load(), Catalogue.load()
CUSTOMERS = 10_000  # 20,000 decisions: enough for the model to find the ground truth again


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """Run ``nba``; its stdout lines (it must succeed)."""
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return out.strip().splitlines()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loop")


@pytest.fixture(scope="module")
def demo_log(workdir: Path) -> Path:
    return write_table(
        simulate_decision_log(CUSTOMERS, 2, seed=11, schema=SCHEMA, catalogue=CATALOGUE), workdir / "log.csv"
    )


@pytest.fixture(scope="module")
def trained(workdir: Path, demo_log: Path) -> loop.Trained:
    """The demo log's model, trained once through the Python API, in its own registry."""
    return loop.train(demo_log, propensity_column="propensity", registry=workdir / "api-registry")


def png_sizes(report: str) -> dict[str, tuple[int, int]]:
    """Each embedded figure's name and pixel size, decoded as a PNG."""
    import matplotlib.image

    sizes = {}
    for name, data in re.findall(r"<figure id='(\w+)'><img [^>]*src='data:image/png;base64,([^']+)'", report):
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
        sizes[name] = (image.shape[1], image.shape[0])
    return sizes


def test_the_whole_loop(capsys, workdir, demo_log):
    registry = workdir / "registry"
    parquet = write_table(read_table(demo_log), workdir / "log.parquet")

    # 1. Train on the CSV and on the Parquet copy: the last line is the version id, the data fingerprint is one.
    common = ["--action-column", "action", "--outcome-column", "accepted", "--propensity-column", "propensity"]
    version = run(capsys, "train", "--log", str(demo_log), *common, "--registry", str(registry))[-1]
    twin = run(capsys, "train", "--log", str(parquet), *common, "--registry", str(registry))[-1]
    versions = [v["version"] for v in Registry(registry).versions()]
    assert set(versions) == {version, twin}
    card = json.loads((registry / version / "model.json").read_text())
    assert card["log"]["fingerprint"] == json.loads((registry / twin / "model.json").read_text())["log"]["fingerprint"]
    assert card["servable"] is True and card["objective"] == "binary"
    assert card["log"]["source"] == "log.csv"  # a name, not where it was on this machine
    assert card["split"]["fit_rows"] > card["split"]["holdout_rows"] > 0
    assert card["params"]["lightgbm"]["objective"] == "binary" and "learning_rate" in card["params"]["lightgbm"]
    assert {"auc_holdout", "logloss_holdout", "best_iteration"} <= set(card["metrics"])

    # 2. Evaluate: the JSON on the last line, the report with every plot, decodable.
    report = workdir / "report.html"
    lines = run(capsys, "evaluate", "--model", version, "--registry", str(registry), "--log", str(demo_log),
                "--report", str(report), "--json")  # fmt: skip
    summary = json.loads(lines[-1])
    assert len(lines) == 1 and json.loads((workdir / "report.json").read_text()) == summary
    assert summary["model"] == version and summary["rows_kind"] == "holdout"
    assert summary["rows"] == card["split"]["holdout_rows"]
    assert summary["trusted"] is True and summary["propensities"] == "logged"
    sizes = png_sizes(report.read_text(encoding="utf-8"))
    assert set(sizes) == set(PLOTS)
    assert all(width > 200 and height > 150 for width, height in sizes.values())

    # The logging (uniform) policy's estimate is its observed rate, within its own interval.
    logging = summary["policies"]["logging"]
    observed = summary["metrics"]["mean_outcome"]
    for name in ("ips", "snips", "dr"):
        assert logging[name]["low"] <= observed <= logging[name]["high"]
    # The model's greedy policy is estimated better than uniform logging, and the difference is significant.
    model = summary["policies"]["model"]
    assert model["dr"]["estimate"] > logging["dr"]["estimate"]
    assert summary["model_minus_logging"]["dr"]["low"] > 0

    # 3. Score part of the log: one column per action, the chosen action, decided by the rules (it has touchpoints).
    recent = write_table(read_table(demo_log).slice(0, 2_000), workdir / "recent.csv")
    scores = workdir / "scores.csv"
    run(capsys, "score", "--model", version, "--registry", str(registry), "--input", str(recent),
        "--output", str(scores))  # fmt: skip
    scored = pa_csv.read_csv(scores)
    actions = Catalogue.load().action_ids
    assert scored.column_names == ["row", "customer_id", "decision_id", *actions, "chosen_action", "chosen_by"]
    assert scored.num_rows == 2_000
    assert set(scored.column("chosen_by").to_pylist()) == {"rules"}


def test_training_recovers_the_ground_truth(workdir, demo_log, trained):
    evaluation = loop.evaluate(trained.directory, demo_log)
    held_out = evaluation.log.table.take(evaluation.rows)
    truth = true_probabilities(schema_values(held_out, FeatureSchema.load()), evaluation.candidates)
    rows = np.arange(len(evaluation.rows))
    logged = truth[rows, [evaluation.candidates.index(a) for a in evaluation.actions]]

    # The model's predictions follow the true probabilities, and rank outcomes nearly as well as the truth does.
    assert np.corrcoef(evaluation.predicted.ravel(), truth.ravel())[0, 1] > 0.7
    assert evaluation.metrics["auc"] >= auc(evaluation.outcomes, logged) - 0.05

    # Off-policy: the true value of the model's policy (known here) lies within its DR and SNIPS intervals,
    # and is far above the uniform policy's.
    chosen = np.argmax(evaluation.predicted, axis=1)
    true_value = float(truth[rows, chosen].mean())
    model = evaluation.policy("model")
    assert model.dr.contains(true_value) and model.snips.contains(true_value)
    assert true_value > 2 * float(truth.mean())


def test_the_trained_artifact_is_served_by_the_services_scorer_with_the_same_predictions(demo_log, trained):
    schema = FeatureSchema.load()
    scorer = LightGBMScorer(trained.directory, schema)
    assert scorer.version == trained.version
    artifact = ModelArtifact.load(trained.directory, schema)
    table = read_table(demo_log).slice(0, 25)
    offline = artifact.predict(loop.load_log(demo_log, "action", "accepted").features[:25], artifact.actions)
    for i, values in enumerate(schema_values(table, schema)):
        np.testing.assert_allclose(scorer.score(values, artifact.actions), offline[i], rtol=1e-12)


def test_scoring_a_population_decides_with_the_rules_at_a_touchpoint(capsys, workdir, trained):
    registry, version = trained.directory.parent, trained.version
    now = time.time()
    population = pa.Table.from_pylist(generate_population(300, seed=5, now=now))
    flights = ["AZ610" if domain == "airline" else None for domain in population.column("domain").to_pylist()]
    population = population.append_column("ctx_flight", pa.array(flights, type=pa.string()))
    path = write_table(population, workdir / "population.csv")

    at_kiosk = workdir / "kiosk.csv"
    run(capsys, "score", "--model", version, "--registry", str(registry), "--input", str(path),
        "--output", str(at_kiosk), "--touchpoint", "CHECKIN_KIOSK")  # fmt: skip
    chosen = dict(
        zip(
            pa_csv.read_csv(at_kiosk).column("customer_id").to_pylist(),
            pa_csv.read_csv(at_kiosk, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
            .column("chosen_action")
            .to_pylist(),
            strict=True,
        )
    )
    assert chosen["demo-ife-gold"] == "upgrade_first_class"  # S1: mandatory service recovery, the rule decides
    domains = dict(
        zip(population.column("customer_id").to_pylist(), population.column("domain").to_pylist(), strict=True)
    )
    # Nothing the kiosk offers is for a bank customer: the rules leave them without an action.
    assert all(chosen[c] is None for c, d in domains.items() if d == "bank")
    airline_offers = {"bonus_points_recovery", "lounge_pass", "extra_legroom_seat", "extra_bag", "fast_track"}
    airline_offers.add("long_haul_double_points")
    assert {chosen[c] for c, d in domains.items() if d == "airline"} - {"upgrade_first_class"} <= airline_offers

    # As the service does: a flight years past has no pool to take a seat from (capacity_pool_closed), and the
    # required upgrade's fallback stands in.
    past = population.append_column("ctx_flight_date", pa.array(["2020-01-01"] * population.num_rows))
    at_kiosk = workdir / "kiosk-past-flight.csv"
    run(capsys, "score", "--model", version, "--registry", str(registry), "--input",
        str(write_table(past, workdir / "past-flight.csv")), "--output", str(at_kiosk),
        "--touchpoint", "CHECKIN_KIOSK")  # fmt: skip
    scored = pa_csv.read_csv(at_kiosk).to_pylist()
    assert next(r["chosen_action"] for r in scored if r["customer_id"] == "demo-ife-gold") == "bonus_points_recovery"
    assert "upgrade_first_class" not in {r["chosen_action"] for r in scored}

    # Without a touchpoint the model alone chooses, among the actions it learnt.
    by_model = workdir / "model.csv"
    run(capsys, "score", "--model", version, "--registry", str(registry), "--input", str(path),
        "--output", str(by_model))  # fmt: skip
    table = pa_csv.read_csv(by_model)
    assert set(table.column("chosen_by").to_pylist()) == {"model"}
    predicted = np.stack([table.column(a).to_numpy() for a in Catalogue.load().action_ids], axis=1)
    learnt = json.loads((registry / version / "model.json").read_text())["logged_actions"]
    best = [learnt[i] for i in np.argmax(np.stack([table.column(a).to_numpy() for a in learnt], axis=1), axis=1)]
    assert table.column("chosen_action").to_pylist() == best
    assert predicted.min() >= 0 and predicted.max() <= 1


def test_a_log_without_propensities_says_its_estimates_cannot_be_trusted(capsys, workdir):
    table = simulate_decision_log(1500, 1, seed=4, schema=SCHEMA, catalogue=CATALOGUE).drop_columns(["propensity"])
    path = write_table(table, workdir / "no-propensity.parquet")
    registry = workdir / "untrusted-registry"
    lines = run(capsys, "train", "--log", str(path), "--action-column", "action", "--outcome-column", "accepted",
                "--registry", str(registry))  # fmt: skip
    assert any("no propensity column" in line for line in lines)
    report = workdir / "untrusted.html"
    summary = json.loads(run(capsys, "evaluate", "--model", "latest", "--registry", str(registry), "--log",
                             str(path), "--report", str(report), "--json")[-1])  # fmt: skip
    assert summary["trusted"] is False and summary["propensities"] == "missing"
    assert any("cannot be trusted" in w for w in summary["warnings"])
    assert "no propensities: these numbers assume uniform logging and cannot be trusted" in report.read_text()


def test_a_single_action_log_with_a_value_outcome_trains_evaluates_and_scores(capsys, workdir):
    rng = np.random.default_rng(2)
    n = 400
    segment = rng.choice(["young", "family", "retired", None], size=n).tolist()
    income = np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 10, n))
    spend = np.round(np.maximum(0, 5 + 0.5 * np.nan_to_num(income, nan=40) + rng.normal(0, 3, n)), 2)
    path = write_table(
        pa.table({"t": np.arange(n), "segment": segment, "income": income, "offer": ["card"] * n, "spend": spend}),
        workdir / "single.csv",
    )
    registry = workdir / "single-registry"
    version = run(capsys, "train", "--log", str(path), "--action-column", "offer", "--outcome-column", "spend",
                  "--time-column", "t", "--registry", str(registry))[-1]  # fmt: skip
    card = json.loads((registry / version / "model.json").read_text())
    assert card["objective"] == "regression" and card["servable"] is False
    assert card["actions"] == ["card"]
    with pytest.raises(Exception, match="does not match the feature schema"):
        LightGBMScorer(registry / version, FeatureSchema.load())  # only schema models go live
    summary = json.loads(run(capsys, "evaluate", "--model", version, "--registry", str(registry), "--log", str(path),
                             "--report", str(workdir / "single.html"), "--json")[-1])  # fmt: skip
    assert summary["outcome"] == "value" and summary["metrics"]["rmse"] < 10
    # Without --json: a short summary for a terminal, the JSON beside the report.
    short = run(capsys, "evaluate", "--model", version, "--registry", str(registry), "--log", str(path),
                "--report", str(workdir / "single.html"))  # fmt: skip
    assert not any(line.lstrip().startswith("{") for line in short) and len("".join(short)) < 1500, short
    assert short[-1] == f"every figure, as JSON: {workdir / 'single.json'}"
    assert json.loads((workdir / "single.json").read_text())["metrics"] == summary["metrics"]
    assert any("one action only" in w for w in summary["warnings"])
    out = workdir / "single-scores.csv"
    run(capsys, "score", "--model", str(registry / version), "--input", str(path), "--output", str(out))
    assert pa_csv.read_csv(out).column_names == ["row", "card", "chosen_action", "chosen_by"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--outcome-column", "bought"], "nba train: outcome column 'bought' is missing"),
        (["--outcome-column", "accepted", "--propensity-column", "customer_id"], "nba train: customer_id: rows 1, 2"),
    ],
)
def test_unusable_logs_end_the_command_with_a_message(capsys, workdir, demo_log, argv, message):
    code = main(["train", "--log", str(demo_log), "--action-column", "action", *argv, "--registry", str(workdir)])
    assert code == 2
    assert capsys.readouterr().err.startswith(message)


def test_an_unknown_model_version_is_refused_listing_the_latest(capsys, workdir, demo_log):
    code = main(["score", "--model", "20990101-000000-deadbeef", "--registry", str(workdir / "registry"),
                 "--input", str(demo_log), "--output", str(workdir / "x.csv")])  # fmt: skip
    assert code == 2
    assert "is neither a model directory" in capsys.readouterr().err


def test_the_report_renders_in_a_real_browser(workdir, demo_log, trained):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine")
    report = workdir / "browser.html"
    loop.evaluate(trained.directory, demo_log, report)
    # After load, the page titles itself with how many images the browser decoded, and how many there are.
    probe = workdir / "probe.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const i = [...document.images]; "
            "document.title = 'decoded ' + i.filter(x => x.complete && x.naturalWidth > 0).length + ' of ' "
            "+ i.length; });</script></body>",
        ),
        encoding="utf-8",
    )
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert f"<title>decoded {len(PLOTS)} of {len(PLOTS)}</title>" in dom


def test_training_the_same_log_twice_gives_two_versions(workdir):
    rng = np.random.default_rng(8)
    n = 200
    path = write_table(
        pa.table({"x": rng.random(n), "offer": rng.choice(["a", "b"], n), "took": (rng.random(n) < 0.3).astype(int)}),
        workdir / "twice.csv",
    )
    registry = workdir / "twice-registry"
    first = loop.train(path, "offer", "took", registry=registry)
    second = loop.train(path, "offer", "took", registry=registry)
    assert first.version != second.version
    assert (first.directory / "model.txt").read_text() == (second.directory / "model.txt").read_text()
    assert [v["version"] for v in Registry(registry).versions()] == [first.version, second.version]


def test_the_commands_read_the_schema_and_catalogue_the_service_is_configured_with(
    monkeypatch, tmp_path, workdir, demo_log
):
    """NBA_SCHEMA_PATH / NBA_CATALOGUE_PATH name what the service runs with; the loop's commands read the same
    files, so a log is checked against the configured catalogue, not the shipped one."""
    schema_doc = yaml.safe_load(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    schema_doc["features"]["loyalty_app_user"] = {"type": "boolean", "default": False, "model": False}
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema_doc), encoding="utf-8")
    catalogue_doc = yaml.safe_load(DEFAULT_CATALOGUE_PATH.read_text(encoding="utf-8"))
    del catalogue_doc["actions"]["lounge_pass"]
    (tmp_path / "actions.yaml").write_text(yaml.safe_dump(catalogue_doc, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("NBA_SCHEMA_PATH", str(tmp_path / "schema.yaml"))
    monkeypatch.setenv("NBA_CATALOGUE_PATH", str(tmp_path / "actions.yaml"))

    schema, catalogue = loop.configured_definitions()
    assert "loyalty_app_user" in schema.by_name and "loyalty_app_user" not in SCHEMA.by_name
    assert "lounge_pass" not in catalogue.action_ids and "lounge_pass" in CATALOGUE.action_ids
    with pytest.raises(loop.LogError, match=r"action: unknown action ids 'lounge_pass'"):
        loop.load_log(demo_log, "action", "accepted", "propensity", feature_columns=None)
