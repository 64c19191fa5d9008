"""The data scientist's loop as a Python API, one function per ``nba`` command, for notebooks.

    from training import loop

    loop.simulate_demo_log("demo-log.parquet")                       # nba demo-log --out demo-log.parquet
    trained = loop.train("demo-log.parquet", action_column="action", outcome_column="accepted",
                         propensity_column="propensity")              # nba train --log ...
    evaluation = loop.evaluate(trained.version, "demo-log.parquet", report="report.html")
    evaluation.summary()["model_minus_logging"]                      # nba evaluate ... (its JSON line)
    loop.score(trained.version, "customers.csv", "scores.csv")       # nba score ...
    loop.publish(trained.version)                                    # nba publish VERSION
    loop.rollback()                                                  # nba rollback
    loop.demo_population("population.parquet", customers=2_000)     # nba demo-population ...
    report = loop.simulate("population.parquet", rules="my-policies/")  # nba simulate ...
    report.summary()["difference"]["first_action_changed"]

Models live in a registry directory (default: ``registry`` under ``NBA_DATA_DIR``); a model is named by its
version id, ``latest``, or a directory holding model.txt and its card, model.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from decision.catalogue import Catalogue
from decision.models import Deployment, ModelCard, Registry
from features.schema import FeatureSchema
from training.artifact import ModelArtifact
from training.demo_log import LoggingPolicy, simulate_decision_log
from training.evaluate import Evaluation, evaluate_model
from training.log_import import ImportedLog, LogColumns, LogError, import_log, write_table
from training.off_policy import DEFAULT_MAX_WEIGHT
from training.report import write_report
from training.scoring_batch import ScoreResult, score_file
from training.simulate import SimulationReport, StrategySpec
from training.train import TrainingOptions, train_model

__all__ = [
    "Trained",
    "default_registry",
    "evaluate",
    "export_decision_log",
    "load_log",
    "demo_population",
    "load_model",
    "publish",
    "rollback",
    "live_strategy",
    "score",
    "simulate",
    "simulate_demo_log",
    "train",
]


@dataclass(frozen=True)
class Trained:
    """A new registry version."""

    version: str
    directory: Path

    @property
    def card(self) -> ModelCard:
        return ModelCard.read(self.directory)


def configured_definitions() -> tuple[FeatureSchema, Catalogue]:
    """The feature schema and catalogue the service is configured with (``NBA_SCHEMA_PATH``,
    ``NBA_CATALOGUE_PATH``): what the commands train, evaluate, score and export with, and what ``publish``
    checks a model against."""
    from decision.app import definitions
    from decision.settings import Settings

    return definitions(Settings())


def default_registry() -> Path:
    """``registry`` under the service's data directory (``NBA_DATA_DIR``, default ``.nba-data``)."""
    from decision.settings import Settings

    return Settings().registry_root


def load_log(
    path: Path | str,
    action_column: str,
    outcome_column: str,
    propensity_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
) -> ImportedLog:
    """Read and check a CSV/Parquet log, or a shipped log directory (``LogError`` names the column and rows when
    it cannot be used)."""
    columns = LogColumns(
        action=action_column,
        outcome=outcome_column,
        propensity=propensity_column,
        features=tuple(feature_columns) if feature_columns is not None else None,
        time=time_column,
    )
    schema, catalogue = configured_definitions()
    return import_log(log_source(path, schema), columns, schema, catalogue_actions=catalogue.action_ids)


def train(
    log: Path | str | ImportedLog,
    action_column: str = "action",
    outcome_column: str = "accepted",
    propensity_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    registry: Path | str | None = None,
    options: TrainingOptions | None = None,
    params: Mapping[str, Any] | None = None,
) -> Trained:
    """``nba train``: train on a log and store a new version in the registry."""
    if not isinstance(log, ImportedLog):
        log = load_log(log, action_column, outcome_column, propensity_column, feature_columns, time_column)
    options = options or TrainingOptions()
    if params:
        options = TrainingOptions(**{**options.__dict__, "params": {**options.params, **params}})
    registry_at = Registry(Path(registry or default_registry()))
    schema, catalogue = configured_definitions()
    directory = train_model(log, registry_at, options, schema=schema, catalogue=catalogue)
    return Trained(directory.name, directory)


def load_model(model: str | Path, registry: Path | str | None = None) -> ModelArtifact:
    """A model by version id, ``latest`` or directory."""
    schema, _ = configured_definitions()
    return ModelArtifact.load(Registry(Path(registry or default_registry())).resolve(model), schema)


def evaluate(
    model: str | Path,
    log: Path | str,
    report: Path | str | None = None,
    *,
    registry: Path | str | None = None,
    action_column: str | None = None,
    outcome_column: str | None = None,
    propensity_column: str | None = None,
    time_column: str | None = None,
    rows: Literal["auto", "all"] = "auto",
    max_weight: float = DEFAULT_MAX_WEIGHT,
) -> Evaluation:
    """``nba evaluate``: prediction quality and off-policy estimates on the rows the model never saw.

    Columns default to the names the model was trained with. Writes the HTML report when ``report`` is given.
    """
    artifact = load_model(model, registry)
    columns = artifact.log_columns(
        action=action_column, outcome=outcome_column, propensity=propensity_column, time=time_column
    )
    imported = import_log(
        log_source(log, artifact.schema), columns, artifact.schema, encoding=artifact.encoding,
        known_actions=artifact.actions,
    )  # fmt: skip
    evaluation = evaluate_model(artifact, imported, rows=rows, max_weight=max_weight)
    if report is not None:
        write_report(evaluation, Path(report))
    return evaluation


def score(
    model: str | Path,
    input: Path | str,
    output: Path | str,
    *,
    registry: Path | str | None = None,
    touchpoint: str | None = None,
) -> ScoreResult:
    """``nba score``: each action's predicted outcome and the chosen action for every input row."""
    return score_file(load_model(model, registry), Path(input), Path(output), touchpoint=touchpoint)


def publish(
    version: str,
    *,
    challenger: str | None = None,
    share: float = 0.0,
    shadow: bool = False,
    note: str = "",
    registry: Path | str | None = None,
) -> Deployment:
    """``nba publish``: make a version live (with an optional challenger) on every running server.

    Each model is first checked as a server would load it, in a child process: one that does not match the
    feature schema, is damaged or does not give probabilities for every catalogue action is refused
    (``ModelError``) and what serves stays as it is.
    """
    from decision.deployment import check_model
    from decision.settings import Settings

    settings = Settings()  # checked against the schema and catalogue the servers are configured with
    actions = Catalogue.load(settings.catalogue_path).action_ids
    return Registry(Path(registry or default_registry())).publish(
        version,
        challenger=challenger,
        share=share,
        shadow=shadow,
        note=note,
        check=lambda directory: check_model(directory, settings.schema_path, actions),
    )


def rollback(*, note: str = "", registry: Path | str | None = None) -> Deployment:
    """``nba rollback``: the deployment before the live one serves again, once each of its models is checked as
    a server would load it (a model damaged since it was published is refused: ``ModelError``)."""
    from decision.deployment import check_model
    from decision.settings import Settings

    settings = Settings()
    actions = Catalogue.load(settings.catalogue_path).action_ids
    return Registry(Path(registry or default_registry())).rollback(
        note=note, check=lambda directory: check_model(directory, settings.schema_path, actions)
    )


def export_decision_log(
    redis_url: str | None,
    output: Path | str,
    *,
    log_dir: Path | str | None = None,
    answered_only: bool = False,
    chosen_only: bool = False,
) -> Path:
    """``nba export-log``: the service's decision and outcome log as a training log file (``chosen_only``: one
    row per decision, its first action, with the policy's propensity: what off-policy evaluation reads).

    From Redis's streams (``redis_url``), the shipped log's files (``log_dir``), or both: the files, then what
    Redis holds that is not shipped yet, each decision once."""
    import redis

    from training.stream_export import export_decision_log as export
    from training.stream_export import export_shipped_log

    schema, _ = configured_definitions()
    client = redis.Redis.from_url(redis_url) if redis_url else None
    try:
        if log_dir is not None:
            table = export_shipped_log(
                log_dir, client, schema=schema, answered_only=answered_only, chosen_only=chosen_only
            )
        elif client is not None:
            table = export(client, schema=schema, answered_only=answered_only, chosen_only=chosen_only)
        else:
            raise LogError("export-log: give --redis-url, --log-dir or both")
    finally:
        if client is not None:
            client.close()
    return write_table(table, Path(output))


def is_log_directory(log: Path | str) -> bool:
    """A shipped log (a directory, or a filesystem URL such as s3://...) rather than one CSV/Parquet file."""
    return "://" in str(log) or Path(log).is_dir()


def log_source(log: Path | str, schema: FeatureSchema) -> Path | pa.Table:
    """What ``import_log`` reads: the file, or a shipped log directory as the table ``nba export-log`` writes."""
    if not is_log_directory(log):
        return Path(log)
    from decision.decision_log.shipped_files import LogDirectoryError
    from training.stream_export import export_shipped_log

    try:
        table = export_shipped_log(log, schema=schema)
    except LogDirectoryError as exc:
        raise LogError(str(exc)) from exc
    if table.num_rows == 0:
        raise LogError(f"{log}: a log directory with no shipped decisions (nba ship-log writes them)")
    return table


def simulate_demo_log(
    output: Path | str,
    customers: int = 5_000,
    decisions_per_customer: int = 2,
    policy: LoggingPolicy = "uniform",
    epsilon: float = 0.3,
    seed: int = 7,
) -> Path:
    """``nba demo-log``: a decision log of the demo population with known propensities (``training.demo_log``),
    made with the shipped schema and catalogue the population is generated for."""
    from training.population import demo_definitions

    schema, catalogue = demo_definitions()
    table = simulate_decision_log(
        customers,
        decisions_per_customer,
        policy=policy,
        epsilon=epsilon,
        seed=seed,
        schema=schema,
        catalogue=catalogue,
    )
    return write_table(table, Path(output))


def demo_population(output: Path | str, customers: int = 2_000, seed: int = 7, now: float | None = None) -> Path:
    """``nba demo-population``: the demo population with today's touchpoint and flight, as CSV or Parquet."""
    import pyarrow as pa

    from training.population import at_touchpoints, generate_population

    rows = at_touchpoints(generate_population(customers, seed=seed, now=now), seed=seed)
    return write_table(pa.Table.from_pylist(rows), Path(output))


def live_strategy(live_model: Path | str | None = None) -> StrategySpec:
    """The strategy the service runs with its settings (``NBA_*``): rules, catalogue, messages and a model.

    ``live_model`` defaults to the published champion (the registry's ``live.json``), or ``NBA_MODEL_DIR`` while
    nothing is published; name another directory to simulate against that.
    """
    from decision.app import rule_files
    from decision.settings import Settings

    settings = Settings()
    if live_model is None:
        registry = Registry(settings.registry_root)
        deployment = registry.live()
        live_model = registry.resolve(deployment.champion) if deployment is not None else settings.model_dir
    return StrategySpec(rule_files(settings), Path(live_model))


def simulate(
    population: Path | str,
    *,
    rules: Path | str | None = None,
    catalogue: Path | str | None = None,
    messages: Path | str | None = None,
    model: Path | str | None = None,
    live_model: Path | str | None = None,
    touchpoint: str | None = None,
    limit: int | None = None,
    now: float | None = None,
) -> SimulationReport:
    """``nba simulate``: the live decision flow over a population, and a candidate's difference when any of
    ``rules`` (a policy directory), ``catalogue``, ``messages`` or ``model`` (a directory) is given.

    Raises ``SimulationError`` naming the file and column or field when the population or a strategy is bad.
    """
    from training.simulate import simulate as run

    live = live_strategy(live_model)
    candidate = None
    if any(x is not None for x in (rules, catalogue, messages, model)):
        candidate = live.replaced(
            Path(rules) if rules is not None else None,
            Path(catalogue) if catalogue is not None else None,
            Path(messages) if messages is not None else None,
            Path(model) if model is not None else None,
        )
    return run(
        Path(population),
        live,
        candidate,
        schema=configured_definitions()[0],
        touchpoint=touchpoint,
        limit=limit,
        now=now,
    )
