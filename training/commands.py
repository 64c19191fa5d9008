"""The data scientist's ``nba`` subcommands: demo-log, export-log, train, evaluate, score, models, publish,
rollback, demo-population, simulate.

``add_training_commands`` (the ``nba.commands`` entry point ``training`` in pyproject.toml, found by
``decision/cli.py``) adds them to the ``nba`` parser and returns their handlers; each handler calls
``training.loop`` (the same API notebooks use). Heavy imports wait until a command runs, so ``nba decide``
starts as fast as before. A log or model that cannot be used ends the command with exit code 2 and a message
naming the column and rows (or the version).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from decision.cli import Handler


def add_training_commands(commands: Any) -> dict[str, Handler]:
    """Add the subcommands to ``commands`` (argparse's subparsers action); returns {name: handler}."""
    demo = commands.add_parser("demo-log", help="write a simulated decision log of the demo population")
    demo.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.parquet")
    demo.add_argument("--customers", type=int, default=5_000)
    demo.add_argument("--decisions-per-customer", type=int, default=2)
    demo.add_argument("--policy", choices=["uniform", "epsilon-greedy"], default="uniform", help="logging policy")
    demo.add_argument("--epsilon", type=float, default=0.3, help="exploration share of epsilon-greedy")
    demo.add_argument("--seed", type=int, default=7)

    export = commands.add_parser("export-log", help="export the service's decision/outcome log as a training log")
    export.add_argument("--redis-url", default=None, help="the streams in Redis (with --log-dir: what is not shipped)")
    export.add_argument("--log-dir", default=None, help="the shipped log: a directory or filesystem URL")
    export.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.parquet")
    export.add_argument("--answered-only", action="store_true", help="drop offered actions without an outcome")
    export.add_argument(
        "--chosen-only", action="store_true", help="only each decision's first action (the rows off-policy needs)"
    )

    train = commands.add_parser("train", help="train a model on a log; prints the new version id last")
    _log_columns(train, required=True)
    train.add_argument("--feature-columns", default=None, help="A,B,... (default: every other column)")
    train.add_argument("--registry", type=Path, default=None, help="model registry (default: NBA_DATA_DIR/registry)")
    train.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a LightGBM parameter")

    evaluate = commands.add_parser(
        "evaluate", help="HTML report and off-policy estimates, their JSON beside the report (REPORT.json)"
    )
    evaluate.add_argument("--model", required=True, help="version id, latest, or a model directory")
    _log_columns(evaluate, required=False)
    evaluate.add_argument("--report", type=Path, required=True, help="FILE.html")
    evaluate.add_argument("--registry", type=Path, default=None)
    evaluate.add_argument("--rows", choices=["auto", "all"], default="auto", help="auto: held-out rows only")
    evaluate.add_argument("--max-weight", type=float, default=None, help="clip importance weights (default 100)")
    evaluate.add_argument("--json", action="store_true", help="print the JSON summary instead of the short one")

    score = commands.add_parser("score", help="every action's predicted outcome and the chosen action, per row")
    score.add_argument("--model", required=True, help="version id, latest, or a model directory")
    score.add_argument("--input", type=Path, required=True, help="FILE.csv or FILE.parquet")
    score.add_argument("--output", type=Path, required=True, help="FILE.csv or FILE.parquet")
    score.add_argument("--touchpoint", default=None, help="decide with the rules at this touchpoint")
    score.add_argument("--registry", type=Path, default=None)

    models = commands.add_parser("models", help="list the registry's model versions; * marks what serves")
    models.add_argument("--registry", type=Path, default=None)
    models.add_argument("--json", action="store_true", help="every version's card entry and what serves, as JSON")

    publish = commands.add_parser("publish", help="make a registry version live on every running server")
    publish.add_argument("version", help="version id or latest")
    publish.add_argument("--challenger", default=None, help="a second version, deciding --share of the customers")
    publish.add_argument("--share", type=float, default=0.0, help="the challenger's share of customers, in (0, 1)")
    publish.add_argument("--shadow", action="store_true", help="the challenger scores every request, never decides")
    publish.add_argument("--note", default="", help="why, for the audit trail")
    publish.add_argument("--registry", type=Path, default=None)

    rollback = commands.add_parser("rollback", help="go back to the deployment before the live one")
    rollback.add_argument("--note", default="", help="why, for the audit trail")
    rollback.add_argument("--registry", type=Path, default=None)

    population = commands.add_parser("demo-population", help="write the demo population with touchpoints, flights")
    population.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.parquet")
    population.add_argument("--customers", type=int, default=2_000, help="ordinary customers besides the personas")
    population.add_argument("--seed", type=int, default=7)

    simulate = commands.add_parser("simulate", help="what-if: the live decision over a population, and a candidate")
    simulate.add_argument("--population", type=Path, required=True, help="FILE.csv or FILE.parquet")
    simulate.add_argument("--rules", type=Path, default=None, help="candidate policy directory")
    simulate.add_argument("--catalogue", type=Path, default=None, help="candidate action catalogue (levers, stock)")
    simulate.add_argument("--messages", type=Path, default=None, help="candidate messages file")
    simulate.add_argument("--model", type=Path, default=None, help="candidate model directory")
    simulate.add_argument("--live-model", type=Path, default=None, help="default: the published champion")
    simulate.add_argument("--touchpoint", default=None, help="every row here (default: its touchpoint column)")
    simulate.add_argument("--limit", type=int, default=None, help="the first N rows only")
    simulate.add_argument("--now", type=float, default=None, help="the clock, epoch seconds (default: now)")
    simulate.add_argument("--json", type=Path, default=None, help="also write the report's numbers to FILE.json")

    return {
        "demo-population": _guarded("demo-population", _demo_population),
        "simulate": _guarded("simulate", _simulate),
        "demo-log": _guarded("demo-log", _demo_log),
        "export-log": _guarded("export-log", _export_log),
        "train": _guarded("train", _train),
        "evaluate": _guarded("evaluate", _evaluate),
        "score": _guarded("score", _score),
        "models": _guarded("models", _models),
        "publish": _guarded("publish", _publish),
        "rollback": _guarded("rollback", _rollback),
    }


def _log_columns(parser: argparse.ArgumentParser, required: bool) -> None:
    default = "" if required else " (default: the model's)"
    parser.add_argument(
        "--log", required=True, help="FILE.csv, FILE.parquet, or a shipped log directory (NBA_LOG_DIR) or URL"
    )
    parser.add_argument("--action-column", required=required, help="the action taken" + default)
    parser.add_argument("--outcome-column", required=required, help="0/1 or a value such as spend" + default)
    parser.add_argument("--propensity-column", default=None, help="P(logging policy chose the action)" + default)
    parser.add_argument("--time-column", default=None, help="row order for the time split (default: found by name)")


def _guarded(name: str, handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from decision.models import ModelError, RegistryError
        from training.artifact import ArtifactError
        from training.log_import import LogError
        from training.simulate import SimulationError

        try:
            return handler(args)
        except (LogError, RegistryError, ArtifactError, ModelError, SimulationError) as exc:
            print(f"nba {name}: {exc}", file=sys.stderr)
            return 2

    return run


def _demo_log(args: argparse.Namespace) -> int:
    from training import loop

    path = loop.simulate_demo_log(
        args.out, args.customers, args.decisions_per_customer, args.policy, args.epsilon, args.seed
    )
    print(f"wrote a {args.policy} decision log of {args.customers:,} customers to {path}")
    return 0


def _demo_population(args: argparse.Namespace) -> int:
    from training import loop

    path = loop.demo_population(args.out, args.customers, args.seed)
    print(f"wrote the demo population of {args.customers + 3:,} customers (personas included) to {path}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from training import loop

    report = loop.simulate(
        args.population,
        rules=args.rules,
        catalogue=args.catalogue,
        messages=args.messages,
        model=args.model,
        live_model=args.live_model,
        touchpoint=args.touchpoint,
        limit=args.limit,
        now=args.now,
    )
    print(report.text())
    print(f"{report.decisions_per_s:,.0f} decisions/s", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.summary(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"report: {args.json}")
    return 0


def _export_log(args: argparse.Namespace) -> int:
    from training import loop
    from training.log_import import read_table

    if args.redis_url is None and args.log_dir is None:
        from training.log_import import LogError

        raise LogError("--redis-url or --log-dir (or both): where the log is")
    path = loop.export_decision_log(
        args.redis_url, args.out, log_dir=args.log_dir, answered_only=args.answered_only, chosen_only=args.chosen_only
    )
    table = read_table(path)
    decisions = len(set(table.column("decision_id").to_pylist())) if table.num_rows else 0
    print(f"exported {table.num_rows:,} offered actions of {decisions:,} decisions to {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training import loop

    features = [c.strip() for c in args.feature_columns.split(",") if c.strip()] if args.feature_columns else None
    log = loop.load_log(
        args.log, args.action_column, args.outcome_column, args.propensity_column, features, args.time_column
    )
    for note in log.notes:
        print(f"note: {note}")
    trained = loop.train(log, registry=args.registry, params=_params(args.param))
    card = trained.card
    metrics = card.metrics
    split = card.split
    print(
        f"{card.objective} model on {len(log):,} rows ({log.encoding.mode} features, "
        f"{'servable' if card.servable else 'not servable'}): fit {split['fit_rows']:,}, "
        f"early stopping {split['early_stopping_rows']:,}, held out {split['holdout_rows']:,}; "
        f"{metrics['best_iteration']} trees"
    )
    shown = {k: v for k, v in metrics.items() if k.endswith("_holdout") and isinstance(v, float)}
    print("held out: " + ", ".join(f"{k.removesuffix('_holdout')} {v:.4g}" for k, v in shown.items()))
    print(f"model directory: {trained.directory}")
    print(trained.version)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training import loop
    from training.off_policy import DEFAULT_MAX_WEIGHT

    evaluation = loop.evaluate(
        args.model,
        args.log,
        args.report,
        registry=args.registry,
        action_column=args.action_column,
        outcome_column=args.outcome_column,
        propensity_column=args.propensity_column,
        time_column=args.time_column,
        rows=args.rows,
        max_weight=args.max_weight or DEFAULT_MAX_WEIGHT,
    )
    summary = evaluation.summary() | {"report": str(args.report)}
    summary_path = Path(args.report).with_suffix(".json")
    summary_path.write_text(json.dumps(summary, allow_nan=False, default=_json_default, indent=1) + "\n")
    if args.json:
        print(json.dumps(summary, allow_nan=False, default=_json_default))
        return 0
    for warning in evaluation.warnings:
        print(f"warning: {warning}")
    print(f"evaluated {evaluation.rows_label}")
    print(f"{'policy':<32} {'IPS':>10} {'SNIPS':>10} {'DR':>10}")
    for p in evaluation.policies[:2]:
        print(f"{p.policy:<32} {p.ips.estimate:>10.4g} {p.snips.estimate:>10.4g} {p.dr.estimate:>10.4g}")
    if evaluation.model_minus_logging:
        dr = evaluation.model_minus_logging["dr"]
        print(f"model minus logging (DR): {dr.estimate:.4g} [{dr.low:.4g}, {dr.high:.4g}]")
    print(f"report: {args.report}\nevery figure, as JSON: {summary_path}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from training import loop

    result = loop.score(args.model, args.input, args.output, registry=args.registry, touchpoint=args.touchpoint)
    how = "rules and arbitration" if result.rules_applied else "the highest predicted outcome"
    print(f"scored {result.rows:,} rows for {len(result.actions)} actions, chosen by {how}: {result.output}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from decision.models import Registry
    from training import loop

    registry = Registry(Path(args.registry or loop.default_registry()))
    live = registry.live()
    serving = {live.champion: "live", live.challenger: "challenger"} if live else {}
    versions = registry.versions()
    if args.json:
        rows = [entry | {"serving": serving.get(entry["version"], "")} for entry in versions]
        print(json.dumps({"versions": rows, "live": live.describe() if live else None}, default=_json_default))
        return 0
    table = [("", "version", "trained at", "rows", "serves", "AUC", "RMSE")]
    for entry in versions:
        metrics = entry["metrics"]
        table.append(
            (
                "*" if entry["version"] in serving else "",
                entry["version"] + (f" ({serving[entry['version']]})" if entry["version"] in serving else ""),
                entry["trained_at"],
                f"{entry['rows']:,}" if isinstance(entry.get("rows"), int) else "",
                "yes" if entry["servable"] else "offline only",
                _figure(metrics.get("auc_holdout"), ".4f"),
                _figure(metrics.get("rmse_holdout"), ".4g"),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not versions:
        print("(no versions: nba train adds one)")
    print("nothing published: servers use NBA_MODEL_DIR" if live is None else f"* serves: {live.describe()}")
    return 0


def _figure(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else ""


def _publish(args: argparse.Namespace) -> int:
    from training import loop

    deployment = loop.publish(
        args.version,
        challenger=args.challenger,
        share=args.share,
        shadow=args.shadow,
        note=args.note,
        registry=args.registry,
    )
    print(f"live: {deployment.describe()} (running servers follow within NBA_RULES_RELOAD_S)")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from training import loop

    deployment = loop.rollback(note=args.note, registry=args.registry)
    print(f"live again: {deployment.describe()}")
    return 0


def _params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            from training.log_import import LogError

            raise LogError(f"--param: expected KEY=VALUE; got {item!r}")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON: {value!r}")
