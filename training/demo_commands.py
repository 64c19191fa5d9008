"""``nba demo`` and ``nba train-demo``: the commands that need the demo population and the demo model.

They sit above serving (``decision/cli.py`` finds them through the ``nba.commands`` entry point) because the demo
data is training's: ``training.population`` and ``training.demo_model``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from decision.cli import Handler, stop_signals, teller_url, wait_for_signal
from decision.settings import Settings

# Each with its request id: run again, it gets the same decision back (a retry), so the examples repeat however
# often they are tried; without one, each call is a new decision the contact policy counts.
EXAMPLES = [
    (
        "S1 service recovery at the kiosk",
        "demo-ife-gold",
        "CHECKIN_KIOSK",
        ["flight=AZ610", "cabin=economy"],
        "s1-kiosk",
    ),
    ("S1 the same passenger at the agent's desk", "demo-ife-gold", "CHECKIN_AGENT", ["flight=AZ610"], "s1-agent"),
    ("S2 an Italian passenger on the phone", "demo-italian", "IVR", ["flight=AZ612"], "s2-ivr"),
    ("S7 a bank customer with an open dispute", "demo-bank-open-issue", "BRANCH_TELLER", [], "s7-teller"),
]


def add_demo_commands(commands: Any) -> dict[str, Handler]:
    """Add ``demo`` and ``train-demo`` to ``commands`` (argparse's subparsers action); returns their handlers."""
    demo = commands.add_parser("demo", help="embedded Redis + demo population + demo model, then serve")
    demo.add_argument("--customers", type=int, default=10_000, help="ordinary customers besides the personas")
    demo.add_argument(
        "--reset",
        action="store_true",
        help="start over: forget the demo's visits (contact history, seats taken, decisions answered and their "
        "outcomes; the log stays) and make the demo model live again",
    )
    train = commands.add_parser("train-demo", help="train the demo model on the simulated response history")
    train.add_argument("--out", type=Path, default=None, help="model directory (default: NBA_MODEL_DIR)")
    return {"demo": _demo, "train-demo": _train_demo}


def _demo(args: argparse.Namespace) -> int:
    from decision.app import Service
    from decision.decision_log.shipper_process import shipping_beside
    from decision.discovery import announced, service_file
    from decision.models import Registry
    from features.redis_client import connect
    from features.redis_store import BULK_TIMEOUT_MS, RedisOnlineStore
    from training.demo_model import load_or_train_demo_model, register_demo_model
    from training.population import DEMO_BANK_OPEN_ISSUE, generate_population

    settings = Settings()
    model_dir = load_or_train_demo_model(settings.model_dir)
    version = register_demo_model(model_dir, settings.registry_root, make_live=args.reset)
    live = Registry(settings.registry_root).live()
    serving = live.describe() if live is not None else version
    print(f"demo model: {version} ({model_dir}); serving {serving} (nba models, nba rollback)", flush=True)
    stop = stop_signals()
    with (
        Service.start(settings) as service,
        shipping_beside(settings, service.redis_url),
        announced(settings, service.grpc.target, service.http.url if service.http else "", service.redis_url),
    ):
        serving_store = service.flow.store
        assert isinstance(serving_store, RedisOnlineStore)
        # A client of its own for the set-up: the serving one gives up after a decision's few milliseconds, which
        # a 10,000-profile pipeline on a busy machine outlasts.
        config = replace(serving_store.config, timeout_ms=BULK_TIMEOUT_MS)
        store = RedisOnlineStore(connect(config), config)
        if args.reset:
            print(f"reset: forgot {forget_visits(store.client, store.keys)} keys of earlier visits", flush=True)
        now = time.time()
        count = store.write_profiles(generate_population(args.customers, now=now), written_at=now)
        store.client.close()
        print(f"loaded {count} customer profiles into Redis at {service.redis_url}")
        print(f"serving nba.v1.DecisionService on {service.grpc.target}")
        if service.http is not None:
            print(f"teller screen (scenario S7, try {DEMO_BANK_OPEN_ISSUE}): {teller_url(service.http.url)}")
            print(f"HTTP/JSON API: POST {service.http.url}/v1/decide, /v1/outcomes; described at /openapi.json")
        print("\nTry:")
        for title, customer, touchpoint, context, request_id in EXAMPLES:
            extra = f" --context {' '.join(context)}" if context else ""
            print(
                f"  # {title}\n  .venv/bin/nba decide --customer {customer} --touchpoint {touchpoint}{extra}"
                f" --request-id {request_id}"
            )
        print(
            "  # the API, by gRPC server reflection (any gRPC client can read it; with grpcurl:\n"
            f"  # grpcurl -plaintext {service.grpc.target} describe nba.v1.DecisionService)\n"
            "  .venv/bin/nba describe nba.v1.DecisionService\n\n"
            f"Every command finds this service through {service_file(settings)}. Ctrl-C stops.",
            flush=True,
        )
        wait_for_signal(stop)
        service.stop_serving()  # the whole log in Redis before the shipper's last pass
    return 0


def _train_demo(args: argparse.Namespace) -> int:
    from training.demo_model import train_demo_model

    out = args.out or Settings().model_dir
    print(train_demo_model(Path(out)))
    return 0


def forget_visits(client: Any, keys: Any) -> int:
    """Delete what the demo's calls left in Redis (``keys``: a KeyLayout): contact history, capacity pools and
    their holders, decisions and outcomes (so request ids answer anew). The log streams are kept: what was logged
    stays logged, and ships. Returns how many keys went."""
    patterns = [keys.contacts("*"), keys.capacity("*", "*"), keys.capacity_holders("*", "*")]
    patterns += [keys.decision("*"), keys.outcome("*", "*")]
    forgotten = 0
    for pattern in dict.fromkeys(patterns):
        batch = list(client.scan_iter(pattern, count=1000))
        for start in range(0, len(batch), 1000):
            forgotten += client.delete(*batch[start : start + 1000])
    return forgotten
