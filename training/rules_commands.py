"""``nba rules``: the commands business analysts use on the rule files.

  nba rules check                        compile every rule file, catalogue and messages, check every text's
                                         placeholders; say what is wrong
  nba rules test [--only ID]             run the scenarios in rules/scenarios and report which pass
  nba rules explain --customer ID --touchpoint T [--context K=V ...]
                                         every rule, whether it matched this customer here and why not
  nba rules explain --scenario ID        the same for a scenario's customer

Each reads the rule files from the same settings the service does (NBA_POLICY_DIR, NBA_CATALOGUE_PATH,
NBA_MESSAGES_PATH), or from --policy-dir / --catalogue / --messages, so a changed copy can be tried before it
goes live. They sit above serving (``decision/cli.py`` finds them through the ``nba.commands`` entry point):
with no model in NBA_MODEL_DIR, ``test`` and ``explain`` train the demo model first (``training.demo_model``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decision import discovery, validation
from decision.cli import REDIS_HELP, Handler
from decision.errors import InvalidArgument
from decision.explanation import Narrator, TemplateError
from decision.models import CARD_FILE
from decision.scenarios import DEFAULT_SCENARIO_DIR, ScenarioFileError, ScenarioRunner, load_scenarios
from decision.scoring import LightGBMScorer, Scorer
from decision.settings import Settings
from decision.strategy import RELOAD_ERRORS, RuleFiles, Strategy, load_strategy
from features.contact_history import ContactQuery, count_contacts
from features.online_store import CustomerRecord, FeatureStoreUnavailable
from features.schema import FeatureSchema
from rules.explain import RuleVerdict, explain_rules
from training.demo_model import load_or_train_demo_model


def add_rules_commands(commands: Any) -> dict[str, Handler]:
    """Add ``rules`` to ``commands`` (argparse's subparsers action); returns its handler."""
    rules = commands.add_parser("rules", help="check, test and explain the rule files")
    verbs = rules.add_subparsers(dest="rules_command", required=True)
    check = verbs.add_parser("check", help="compile the rule files, catalogue and messages")
    test = verbs.add_parser("test", help="run the rule scenarios and report which pass")
    test.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIO_DIR, help="directory of scenario files")
    test.add_argument("--only", default="", help="run only scenarios whose id or code (S1) contains this")
    explain = verbs.add_parser("explain", help="every rule, whether it matched and why not")
    explain.add_argument("--customer", default="", help="a customer id, read from Redis (NBA_REDIS_URL)")
    explain.add_argument("--touchpoint", default="", help="CHECKIN_KIOSK, CHECKIN_AGENT, IVR, BRANCH_TELLER, ...")
    explain.add_argument("--context", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. flight=AZ610")
    explain.add_argument("--redis-url", default=None, help=REDIS_HELP)
    explain.add_argument("--scenario", default="", help="explain a scenario's customer instead (no Redis)")
    explain.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIO_DIR)
    for parser in (check, test, explain):
        parser.add_argument("--policy-dir", type=Path, default=None, help="rule files (default NBA_POLICY_DIR)")
        parser.add_argument("--catalogue", type=Path, default=None, help="actions.yaml (default NBA_CATALOGUE_PATH)")
        parser.add_argument("--messages", type=Path, default=None, help="messages.yaml (default NBA_MESSAGES_PATH)")
    return {"rules": run}


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    files = RuleFiles(
        args.policy_dir or settings.policy_dir,
        args.catalogue or settings.catalogue_path,
        args.messages or settings.messages_path,
    )
    schema = FeatureSchema.load(settings.schema_path)
    try:
        strategy = load_strategy(files, schema, _scorer(settings, schema, needed=args.rules_command != "check"))
    except TemplateError as error:
        # The catalogue's texts stopped the load; the messages file's are named with them.
        problems = Narrator(files.messages_path, schema).messages_problems() + error.problems
        return _text_problems(args.rules_command, problems)
    except RELOAD_ERRORS as error:
        print(f"nba rules {args.rules_command}: {error}", file=sys.stderr)
        return 2
    if args.rules_command == "check":
        return _check(strategy, Path(files.catalogue_path).name)
    try:
        if args.rules_command == "test":
            return _test(args, strategy, schema)
        return _explain(args, strategy, schema, settings)
    except ScenarioFileError as error:
        print(f"nba rules {args.rules_command}: {error}", file=sys.stderr)
        return 2


def _check(strategy: Strategy, catalogue_file: str) -> int:
    """The rules compiled; then every template checked (``Narrator.template_problems``): 1 when there is any."""
    rules = strategy.rules.policies
    problems = strategy.narrator.template_problems(strategy.catalogue.actions, catalogue_file)
    if problems:
        return _text_problems("check", problems)
    print(f"rules {strategy.rules_version}: {len(rules.files)} files, {len(strategy.rules.rule_ids)} rules, OK")
    return 0


def _text_problems(command: str, problems: list[str]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"nba rules {command}: {len(problems)} problem(s) in the texts", file=sys.stderr)
    return 1


def _scorer(settings: Settings, schema: FeatureSchema, needed: bool) -> Scorer:
    if not needed:
        return _NoModel()
    model_dir = settings.model_dir
    if not (Path(model_dir) / CARD_FILE).exists():
        print(f"(no model in {model_dir}: training the demo model first)", file=sys.stderr)
        load_or_train_demo_model(model_dir)
    return LightGBMScorer(model_dir, schema)


def _test(args: argparse.Namespace, strategy: Strategy, schema: FeatureSchema) -> int:
    scenarios = [s for s in load_scenarios(args.scenarios, schema) if args.only in s.scenario_id or args.only == s.code]
    results = ScenarioRunner(strategy, schema).run_all(scenarios)
    for result in results:
        s = result.scenario
        print(f"{'PASS' if result.passed else 'FAIL'}  {s.code:<4} {s.scenario_id}  ({s.file})  {s.description}")
        for failure in result.failures:
            print(f"        - {failure}")
    failed = sum(not r.passed for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed  (rules {strategy.rules_version})")
    return 1 if failed or not results else 0


def _explain(args: argparse.Namespace, strategy: Strategy, schema: FeatureSchema, settings: Settings) -> int:
    now = time.time()
    policy = strategy.eligibility
    if args.scenario:
        matches = [s for s in load_scenarios(args.scenarios, schema) if s.scenario_id == args.scenario]
        if not matches:
            raise InvalidArgument(f"--scenario: no scenario {args.scenario!r} in {args.scenarios}")
        scenario = matches[0]
        touchpoint, context = scenario.touchpoint, dict(scenario.context)
        profile = scenario.profile(schema, now) or {}
        raw = {k: v for k, v in profile.items() if k != "customer_id"}
        counts = count_contacts(scenario.contact_history(now), policy.contact_query, now)
        found, who = scenario.customer is not None, f"scenario {scenario.scenario_id}"
    else:
        if not args.customer or not args.touchpoint:
            raise InvalidArgument("--customer and --touchpoint are both needed (or --scenario)")
        validation.customer_id(args.customer)
        touchpoint = validation.touchpoint_name(args.touchpoint)
        context = _context(args.context)
        record = _read_customer(args.customer, discovery.redis_url(settings, args.redis_url), now, policy.contact_query)
        raw, counts, found, who = dict(record.raw), dict(record.contact_counts), record.found, args.customer
    values = schema.parse(raw, now) if found else schema.defaults()
    fact = policy.fact(values, touchpoint, context, counts, found)
    fired = set(strategy.rules.evaluate(fact).fired)
    verdicts = explain_rules(strategy.rules.policies.rules, fact)
    shown_context = " ".join(f"{k}={v}" for k, v in context.items()) or "none"
    print(f"rules {strategy.rules_version}: {who} at {touchpoint.name}, context {shown_context}")
    if not found:
        print("(unknown customer: the schema's defaults)")
    by_rule: dict[str, list[RuleVerdict]] = defaultdict(list)
    for verdict in verdicts:
        by_rule[verdict.rule_id].append(verdict)
    disagreements = []
    for rule_id, group in by_rule.items():
        first = group[0]
        matched = [v for v in group if v.matched]
        where = f"({first.file}, priority {first.priority})"
        if (rule_id in fired) != bool(matched):
            disagreements.append(rule_id)
        if len(group) == 1:
            mark = "MATCH" if first.matched else "no   "
            print(f"{mark} {rule_id} {where}\n        {first.why}")
            continue
        if matched:
            for verdict in matched:
                print(f"MATCH {verdict.name} {where}\n        {verdict.why}")
        else:
            print(f"no    {rule_id} {where}: for none of its {len(group)} actions; e.g.\n        {first.why}")
    if disagreements:
        print(f"\nthe engine disagrees on: {', '.join(disagreements)} (please report this)", file=sys.stderr)
        return 1
    return 0


def _read_customer(customer_id: str, redis_url: str, now: float, contacts: ContactQuery) -> CustomerRecord:
    from features.redis_client import connect
    from features.redis_store import RedisOnlineStore, RedisStoreConfig

    config = RedisStoreConfig(url=redis_url, timeout_ms=2000)
    try:
        return RedisOnlineStore(connect(config), config).read(customer_id, now, contacts=contacts)
    except FeatureStoreUnavailable as error:
        raise InvalidArgument(f"--redis-url: cannot read {redis_url}: {error}") from None


def _context(items: list[str]) -> dict[str, str]:
    context = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--context: expected KEY=VALUE; got {item!r}")
        context[key] = value
    return context


class _NoModel(Scorer):
    """``nba rules check`` compiles rules without a model: nothing is scored."""

    version = "none"

    def score(self, values: Mapping[str, Any], action_ids: Sequence[str]) -> np.ndarray:
        raise RuntimeError("nba rules check scores nothing")

    def explain(self, values: Mapping[str, Any], action_id: str, k: int) -> list[tuple[str, float]]:
        raise RuntimeError("nba rules check explains nothing")
