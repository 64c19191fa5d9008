"""Does a long run leak? Decisions in-process on ``DecisionFlow``, in a process of their own, with its resident
memory read after each checkpoint.

The flow is built by the service's own wiring (``decision.app.build_flow``) over the given Redis and model, the
same objects the gRPC server holds; only the gRPC layer is left out, because one server process answers a few
hundred decisions a second on this machine and 100,000 through it would not fit in ``make bench``'s budget.
Prints one JSON line every ``--every`` decisions: ``{"decisions": N, "rss_kib": R, "seconds": S}``; a run that
reaches ``--max-seconds`` first stops there, with a last line for where it stopped, so the harness keeps to its
time budget on a busy machine and says how far the soak got. The Redis timeout is a generous second: on a busy
machine a slow reply must not turn decisions into degraded ones, which skip most of the work.

    python -m benchmarks.memory_soak --redis-url URL --model-dir DIR --data-dir DIR \
        --customers 10000 --decisions 100000 --every 10000 --max-seconds 150
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from benchmarks.harness import rss_kib
from decision.app import build_flow, definitions, store_config
from decision.decision_log import RedisDecisionLog
from decision.domain import DecisionRequest, Touchpoint
from decision.settings import Settings
from features.redis_client import connect


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=10_000, help="ids cust-000001 ... of the loaded population")
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000, help="read RSS after every this many decisions")
    parser.add_argument("--max-seconds", type=float, default=float("inf"), help="stop early after this long")
    args = parser.parse_args()

    settings = Settings(
        _env_file=None,
        redis_url=args.redis_url,
        redis_timeout_ms=1000,
        model_dir=args.model_dir,
        data_dir=args.data_dir,
    )
    config = store_config(settings, args.redis_url)
    client = connect(config)
    flow = build_flow(settings, client, config, *definitions(settings))
    touchpoints = list(Touchpoint)
    rng = random.Random(13)
    started = time.perf_counter()
    made = degraded = 0
    while made < args.decisions:
        decision = flow.decide(
            DecisionRequest(
                customer_id=f"cust-{rng.randint(1, args.customers):06d}",
                touchpoint=touchpoints[made % len(touchpoints)],
                context={"flight": f"AZ{rng.randrange(100, 999)}", "cabin": "economy"},
                request_id=f"soak-{made}",
                max_actions=3,
            )
        )
        made += 1
        degraded += bool(decision.degraded_codes)
        out_of_time = time.perf_counter() - started > args.max_seconds
        if made % args.every == 0 or made == args.decisions or out_of_time:
            if isinstance(flow.decision_log, RedisDecisionLog):
                flow.decision_log.writer.flush()  # what is still queued for the log is not a leak
            line = {
                "decisions": made,
                "rss_kib": rss_kib(os.getpid()),
                "seconds": time.perf_counter() - started,
                "degraded": degraded,
            }
            print(json.dumps(line), flush=True)
        if out_of_time:
            break
    flow.decision_log.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
