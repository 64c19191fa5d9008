"""The ``nba`` command line: the serving commands (serve, decide, outcome, load, incident), and every other
command from the packages above serving, found through the ``nba.commands`` entry points (pyproject.toml).

An entry point names a function that adds its subcommands to the parser and returns their handlers
(:data:`AddCommands`): ``training.commands`` (the data scientist's loop), ``training.demo_commands`` (demo,
train-demo) and ``training.rules_commands`` (rules). So ``nba`` offers them all while serving never imports
training; ``make setup`` installs the entry points with the package.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from pydantic import ValidationError

from decision import discovery, validation
from decision.decision_log.shipper_process import shipping_beside
from decision.errors import InvalidArgument
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from decision.stopping import StopFlag, stop_on

COMMAND_GROUP = "nba.commands"
Handler = Callable[[argparse.Namespace], int]
AddCommands = Callable[[Any], dict[str, Handler]]
"""An ``nba.commands`` entry point: adds subcommands to argparse's subparsers action; returns {name: handler}."""
TARGET_HELP = "HOST:PORT of the service (default: the running service, else NBA_HOST:NBA_PORT)"
REDIS_HELP = "the Redis the service reads (default: NBA_REDIS_URL, else the running service's)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nba", description="Real-time next-best-action decisions.")
    commands = parser.add_subparsers(dest="command", required=True)
    handlers = add_serving_commands(commands)
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        add_commands: AddCommands = entry.load()
        handlers |= add_commands(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = int(handlers[args.command](args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is met by the handler below
        return code
    except InvalidArgument as exc:
        print(f"nba {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"nba {args.command}: invalid NBA_* settings: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``nba decide ... | head``): stop quietly, with the status a shell gives a command
        # its pipe closed on; stdout goes to /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def add_serving_commands(commands: Any) -> dict[str, Handler]:
    """serve, decide, outcome, describe, call, load, incident and ship-log: run the service, talk to it, write its
    features, move its log."""
    serve = commands.add_parser("serve", help="serve gRPC with the settings from NBA_* variables")
    serve.add_argument(
        "--workers", type=int, default=None, help="server processes sharing the port (default: NBA_WORKERS, 1)"
    )

    decide = commands.add_parser("decide", help="ask a running service for a decision")
    decide.add_argument("--target", default=None, help=TARGET_HELP)
    decide.add_argument("--customer", required=True, help="customer id")
    decide.add_argument("--touchpoint", required=True, help="CHECKIN_KIOSK, CHECKIN_AGENT, IVR, ...")
    decide.add_argument("--context", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. flight=AZ610")
    decide.add_argument("--request-id", default="", help="idempotency key")
    decide.add_argument("--max-actions", type=int, default=0)
    decide.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds")
    decide.add_argument("--json", action="store_true", help="print the whole decision as JSON")

    outcome = commands.add_parser("outcome", help="record what the customer did with an action")
    outcome.add_argument("--target", default=None, help=TARGET_HELP)
    outcome.add_argument("--decision-id", required=True)
    outcome.add_argument("--action", required=True)
    outcome.add_argument("--outcome", required=True, choices=["ACCEPTED", "DECLINED", "IGNORED"])
    outcome.add_argument("--json", action="store_true", help="print the reply as JSON")

    load = commands.add_parser("load", help="bulk load customer profiles from CSV or Parquet")
    load.add_argument("file", type=Path)
    load.add_argument("--redis-url", default=None, help=REDIS_HELP)

    incident = commands.add_parser("incident", help="report a service incident now (real-time feature write)")
    incident.add_argument("--redis-url", default=None, help=REDIS_HELP)
    incident.add_argument("--customer", required=True)
    incident.add_argument("--type", required=True, help="ife_broken, seat_broken, delay, lost_bag, card_dispute")
    incident.add_argument("--flight", default="")
    incident.add_argument("--long-haul", action="store_true")

    describe = commands.add_parser(
        "describe", help="the running service's API by gRPC reflection: services, a service, method or message"
    )
    describe.add_argument("symbol", nargs="?", default="", help="e.g. nba.v1.DecisionService, nba.v1.DecideRequest")
    describe.add_argument("--target", default=None, help=TARGET_HELP)

    call = commands.add_parser("call", help="call any method of the running service with a JSON request")
    call.add_argument("method", help="SERVICE/METHOD, e.g. nba.v1.DecisionService/Decide")
    call.add_argument("request", nargs="?", default="{}", help="the request as JSON ('-' reads it from stdin)")
    call.add_argument("--target", default=None, help=TARGET_HELP)
    call.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")

    ship = commands.add_parser("ship-log", help="move the decision log from Redis to Parquet files (the log shipper)")
    ship.add_argument("--redis-url", default=None, help=REDIS_HELP)
    ship.add_argument("--log-dir", default=None, help="a directory or filesystem URL (default: NBA_LOG_DIR)")
    how = ship.add_mutually_exclusive_group()
    how.add_argument("--once", action="store_true", help="ship what is there, then exit")
    how.add_argument("--status", action="store_true", help="show the shipper's state and lag, ship nothing")
    ship.add_argument("--json", action="store_true", help="with --status: print the state as JSON")
    return {
        "serve": _serve,
        "decide": _decide,
        "outcome": _outcome,
        "load": _load,
        "incident": _incident,
        "ship-log": _ship_log,
        "describe": _describe,
        "call": _call,
    }


def _serve(args: argparse.Namespace) -> int:
    from decision.app import Service

    settings = Settings() if args.workers is None else Settings(workers=args.workers)
    stop = stop_signals()
    if settings.workers > 1:
        return _serve_processes(settings, stop)
    with (
        Service.start(settings) as service,
        shipping_beside(settings, service.redis_url),
        discovery.announced(settings, service.grpc.target, service.http.url if service.http else "", service.redis_url),
    ):
        print(f"serving on {service.grpc.target} (Redis {service.redis_url})", flush=True)
        if service.http is not None:
            print(f"teller screen: {teller_url(service.http.url)}  HTTP/JSON API: {service.http.url}/v1/", flush=True)
        wait_for_signal(stop)
        # The whole log in Redis before the shipper's last pass, Redis stopped after it.
        service.stop_serving()
    return 0


def _serve_processes(settings: Settings, stop: StopFlag) -> int:
    from decision.workers import Supervisor

    with Supervisor(settings).start() as supervisor, shipping_beside(settings, supervisor.redis_url):
        url = f"http://{settings.host}:{supervisor.http_port}" if settings.http_enabled else ""
        with discovery.announced(settings, supervisor.target, url, supervisor.redis_url):
            pids = ", ".join(str(pid) for pid in supervisor.pids)
            print(
                f"serving on {supervisor.target} with {settings.workers} processes, pids {pids} "
                f"(Redis {supervisor.redis_url})",
                flush=True,
            )
            if url:
                print(f"teller screen: {teller_url(url)}  HTTP/JSON API: {url}/v1/", flush=True)
            wait_for_signal(stop)
        supervisor.stop_serving()
    return 0


def _decide(args: argparse.Namespace) -> int:
    touchpoint = validation.touchpoint_name(args.touchpoint)
    context = {}
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--context: expected KEY=VALUE; got {item!r}")
        context[key] = value
    request = pb.DecideRequest(
        customer_id=args.customer,
        touchpoint=pb.Touchpoint.Value(touchpoint.name),
        context=context,
        request_id=args.request_id,
        max_actions=args.max_actions,
    )
    with grpc.insecure_channel(discovery.grpc_target(Settings(), args.target)) as channel:
        try:
            reply = pb_grpc.DecisionServiceStub(channel).Decide(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"nba decide: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json_format.MessageToJson(reply, preserving_proto_field_name=True, ensure_ascii=False))
        return 0
    print(reply.explanation.greeting)
    for action in reply.actions:
        flag = " [mandatory]" if action.mandatory else ""
        print(f"{action.rank}. {action.title}{flag}  p={action.propensity:.2f} score={action.score:.1f}")
    print(f"\n{reply.explanation.text}")
    for follow_up in reply.follow_ups:
        print(f"\n--- follow-up: {follow_up.kind} ---\n{follow_up.text}")
    if reply.degraded:
        print(f"\n(degraded: {reply.degraded_reason})")
    print(f"\ndecision {reply.decision_id}  model {reply.model_version}  rules {reply.rules_version}")
    print(_what_changed(reply, args.customer))
    return 0


def _what_changed(reply: pb.DecideResponse, customer: str) -> str:
    """What the call left behind, so a user repeating an example knows why an answer differs (or does not)."""
    if reply.answered_before:
        return f"answered before (request id {reply.request_id}): the same decision; this call changed nothing"
    if "decision_log_unavailable" in reply.degraded_codes:
        # The log spools what it could not write (decision_log.redis_log): logged and counted when Redis is back.
        return "the decision log is unavailable: this decision is spooled, and logged and counted once it is back"
    offers = len(reply.actions)
    counted = f"{offers} offer{'s' if offers != 1 else ''} counted in {customer}'s contact history"
    return f"this call: {counted}; the same --request-id {reply.request_id} gets this decision back"


def _outcome(args: argparse.Namespace) -> int:
    request = pb.RecordOutcomeRequest(
        decision_id=args.decision_id, action_id=args.action, outcome=pb.Outcome.Value(args.outcome)
    )
    with grpc.insecure_channel(discovery.grpc_target(Settings(), args.target)) as channel:
        try:
            reply = pb_grpc.DecisionServiceStub(channel).RecordOutcome(request, timeout=5.0)
        except grpc.RpcError as exc:
            print(f"nba outcome: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"outcome_id": reply.outcome_id, "duplicate": reply.duplicate}))
    elif reply.duplicate:
        print(f"recorded before (outcome {reply.outcome_id}): this call changed nothing")
    else:
        returned = "; a seat the action held goes back to its pool" if args.outcome == "DECLINED" else ""
        print(
            f"recorded {args.outcome} for {args.action} of decision {args.decision_id} (outcome {reply.outcome_id}):"
            f" counted in the customer's contact history{returned}"
        )
    return 0


def _describe(args: argparse.Namespace) -> int:
    from decision.describe import reflecting

    logging.getLogger("grpc_reflection").setLevel(logging.WARNING)  # not a line per file it loads
    target = discovery.grpc_target(Settings(), args.target)
    try:
        with reflecting(target) as reflection:
            print(reflection.describe(args.symbol))
    except grpc.RpcError as exc:
        print(f"nba describe: {target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


def _call(args: argparse.Namespace) -> int:
    from decision.describe import reflecting, request_text

    logging.getLogger("grpc_reflection").setLevel(logging.WARNING)
    request = request_text(sys.stdin.read() if args.request == "-" else args.request)
    target = discovery.grpc_target(Settings(), args.target)
    try:
        with reflecting(target) as reflection:
            print(reflection.call(args.method, request, args.timeout))
    except grpc.RpcError as exc:
        print(f"nba call: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


def _load(args: argparse.Namespace) -> int:
    from decision.progress import progress
    from features.bulk_load import load_file
    from features.redis_client import connect
    from features.redis_store import BULK_TIMEOUT_MS, RedisOnlineStore, RedisStoreConfig
    from features.schema import FeatureSchema

    settings = Settings()
    config = RedisStoreConfig(url=discovery.redis_url(settings, args.redis_url), timeout_ms=BULK_TIMEOUT_MS)
    store = RedisOnlineStore(connect(config), config)

    def shown(profiles: Iterable[dict[str, str]], total: int) -> Iterable[dict[str, str]]:
        return progress(profiles, desc="load", unit="profile", total=total)

    count = load_file(args.file, store, FeatureSchema.load(settings.schema_path), progress=shown)
    print(f"loaded {count} profiles from {args.file}")
    return 0


def _incident(args: argparse.Namespace) -> int:
    from features.redis_client import connect
    from features.redis_store import BULK_TIMEOUT_MS, RedisOnlineStore, RedisStoreConfig
    from features.schema import FeatureSchema

    settings = Settings()
    schema = FeatureSchema.load(settings.schema_path)
    accepted = schema.by_name["last_incident_type"].values
    if args.type not in accepted:
        raise InvalidArgument(f"--type: must be one of {', '.join(accepted)}; got {args.type!r}")
    validation.customer_id(args.customer)
    config = RedisStoreConfig(url=discovery.redis_url(settings, args.redis_url), timeout_ms=BULK_TIMEOUT_MS)
    store = RedisOnlineStore(connect(config), config)
    now = time.time()
    store.update(
        args.customer,
        {
            "last_incident_type": args.type,
            "last_incident": repr(now),
            "last_incident_flight": args.flight,
            "last_incident_long_haul": "1" if args.long_haul else "0",
        },
        at=now,
    )
    print(f"incident {args.type} recorded for {args.customer}")
    return 0


def _ship_log(args: argparse.Namespace) -> int:
    import redis

    from decision.decision_log.shipper import read_status, run_shipper, status_text

    settings = Settings()
    redis_url = discovery.redis_url(settings, args.redis_url)
    if not args.status:
        return run_shipper(settings, redis_url, args.log_dir, once=args.once)
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        status = read_status(client)
    finally:
        client.close()
    print(json.dumps(status) if args.json else status_text(status))
    return 0


def teller_url(base_url: str) -> str:
    """The teller screen's address as a person types it: localhost for the loopback address."""
    return base_url.replace("//127.0.0.1:", "//localhost:") + "/teller"


def stop_signals() -> StopFlag:
    """SIGTERM and SIGINT (Ctrl-C) set the flag from now on: installed before the service starts, so one that
    arrives while it starts stops it cleanly once started, instead of killing it half-way."""
    return stop_on(signal.SIGTERM, signal.SIGINT)


def wait_for_signal(stop: StopFlag) -> None:
    """Return once SIGTERM or SIGINT came (``stop``); the caller then stops what it serves."""
    while not stop.wait(3600):
        pass


if __name__ == "__main__":
    sys.exit(main())
