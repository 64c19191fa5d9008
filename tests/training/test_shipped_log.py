"""The real service's log, shipped to Parquet files by the real shipper process, read back as the training log:
``nba export-log --log-dir`` gives the table ``--redis-url`` gave before shipping (with ``--redis-url`` too: what
is not shipped yet, each decision once), and ``nba train --log DIR`` / ``nba evaluate --log DIR`` take the
directory as it is."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from decision.cli import main
from decision.domain import DecisionRequest, Outcome, Touchpoint
from features.schema import FeatureSchema
from tests.helpers import service_on_its_own_redis, ship_log_command
from training.log_import import read_table
from training.population import generate_population, true_accept_probability

CUSTOMERS = 600


def ship_once(redis_url: str, log_dir: Path) -> None:
    subprocess.run(
        ship_log_command(redis_url, log_dir, "--once"),
        check=True,
        capture_output=True,
        timeout=120,
    )


def decide_all(service, customers: list[dict[str, str]], seed: int) -> list[str]:
    """A decision per customer, and an outcome (from the simulated world's truth) for its first action."""
    schema = FeatureSchema.load()
    rng = np.random.default_rng(seed)
    now = time.time()
    decided = []
    for row in customers:
        truth = schema.parse(row, now)
        airline = truth["domain"] == "airline"
        touchpoint = Touchpoint.CHECKIN_AGENT if airline else Touchpoint.BRANCH_TELLER
        context = {"flight": f"AZ{rng.integers(100, 999)}"} if airline else {}
        decision = service.flow.decide(DecisionRequest(row["customer_id"], touchpoint, context, uuid.uuid4().hex, 20))
        if not decision.actions:
            continue
        first = decision.actions[0].action_id
        accepted = rng.random() < true_accept_probability(truth, first)
        service.flow.record_outcome(decision.decision_id, first, Outcome.ACCEPTED if accepted else Outcome.DECLINED)
        decided.append(decision.decision_id)
    service.flow.decision_log.flush()
    return decided


def export(tmp_path: Path, name: str, *args: str) -> pa.Table:
    out = tmp_path / f"{name}.parquet"
    assert main(["export-log", *args, "--out", str(out)]) == 0
    return read_table(out)


def by_row(table: pa.Table) -> list[tuple]:
    columns = sorted(table.column_names)
    return sorted(tuple(str(row[c]) for c in columns) for row in table.to_pylist())


@pytest.fixture()
def shipped_service(demo_model_dir, tmp_path):
    with service_on_its_own_redis(demo_model_dir, tmp_path, customers=0, exploration_share=0.3) as (service, server):
        population = generate_population(CUSTOMERS, seed=31, now=time.time())
        service.flow.store.write_profiles(population, written_at=time.time())
        yield service, server, population


def test_the_shipped_log_reads_back_as_the_export_of_redis_and_trains(shipped_service, tmp_path, capsys):
    service, server, population = shipped_service
    log_dir = tmp_path / "log"
    first = decide_all(service, population[: CUSTOMERS // 2], seed=1)
    from_redis = export(tmp_path, "from-redis", "--redis-url", server.url)

    ship_once(server.url, log_dir)
    from_files = export(tmp_path, "from-files", "--log-dir", str(log_dir))

    assert from_files.num_rows == from_redis.num_rows > 0
    assert by_row(from_files) == by_row(from_redis)
    assert set(from_files.column("decision_id").to_pylist()) == set(first)

    # More decisions, not shipped yet: the files and Redis together give each decision once.
    second = decide_all(service, population[CUSTOMERS // 2 :], seed=2)
    both = export(tmp_path, "both", "--log-dir", str(log_dir), "--redis-url", server.url, "--chosen-only")
    assert sorted(both.column("decision_id").to_pylist()) == sorted(first + second)

    ship_once(server.url, log_dir)
    capsys.readouterr()
    registry = tmp_path / "registry"
    assert (
        main(
            [
                "train",
                "--log",
                str(log_dir),
                "--action-column",
                "action",
                "--outcome-column",
                "accepted",
                "--registry",
                str(registry),
            ]
        )  # fmt: skip
        == 0
    )
    out = capsys.readouterr().out
    version = out.strip().splitlines()[-1]
    assert "servable" in out and (registry / version / "model.txt").exists()
    report = tmp_path / "report.html"
    assert main(["evaluate", "--model", version, "--log", str(log_dir), "--report", str(report),
                 "--registry", str(registry), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"] == version and report.exists()


def test_train_on_an_empty_log_directory_is_refused(tmp_path, capsys):
    (tmp_path / "log").mkdir()
    assert main(["train", "--log", str(tmp_path / "log"), "--action-column", "action", "--outcome-column", "x"]) == 2
    assert "no shipped decisions" in capsys.readouterr().err
