"""Locust load test of a running service: one gRPC user per touchpoint, with the customers each one meets.

    locust -f benchmarks/locustfile.py --headless -u 10 -r 10 -t 30s --host 127.0.0.1:50051 --csv load

Distributed (more load than one locust process gives; one ``--worker`` per core of the load machine):

    locust -f benchmarks/locustfile.py --headless --master --expect-workers 2 -u 32 -r 32 -t 60s \
        --host 127.0.0.1:50051
    locust -f benchmarks/locustfile.py --worker --master-host 127.0.0.1    # twice

The users, by touchpoint (``weight`` is their share of the users):

- ``KioskCheckIn`` (CHECKIN_KIOSK): airline passengers with their flight and cabin; most ordinary, some with a
  recent incident or complaint (and the demo personas), a few not in the loyalty programme (unknown ids);
- ``AgentCheckIn`` (CHECKIN_AGENT): the same passengers, more of them with a problem (they go to the desk);
- ``BranchTeller`` (BRANCH_TELLER): bank customers, some with an open problem or a complaint;
- ``IvrCall`` (IVR): callers of both, airline callers with a flight half of the time.

Who has an incident, a complaint or an open problem is read from the demo population itself
(``training.population``: the same seed gives the same ids), so ``--customers`` must be the number of ordinary
customers loaded into the service (10,000 for ``nba demo``). A share of the decisions (``--outcome-share``) get
an outcome back.

Like the touchpoints the service is built for, each user retries a call the service answers UNAVAILABLE ("nothing
was stored, retry": an outcome for a decision still in the spool while Redis is skipped), up to 4 times with
exponential back-off within the call's deadline (``RETRY_BACKOFF_S``). Every call is one locust request, whatever
its retries: ``Decide <touchpoint>`` or ``RecordOutcome``, a failure when it still failed after them; each retried
attempt shows as ``<name> UNAVAILABLE, retried``. A degraded decision is an answer, not a failure, but it is named
apart with its codes (``Decide <touchpoint> degraded: unknown_customer``), so the run shows how many decisions
degraded and why.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import grpc
from grpc.experimental import gevent as grpc_gevent
from locust import User, between, events, task
from locust.runners import MasterRunner

from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from training.population import DEMO_BANK_OPEN_ISSUE, DEMO_IFE_GOLD, DEMO_ITALIAN, generate_population

# gRPC's blocking calls would stall locust's gevent loop (one call in flight per locust process): cooperate.
grpc_gevent.init_gevent()

LONG_HAUL_SHARE = 0.3
BUSINESS_CABIN_SHARE = 0.12
OUTCOMES = ((pb.ACCEPTED, 0.15), (pb.DECLINED, 0.35), (pb.IGNORED, 0.5))

# A touchpoint's retries: UNAVAILABLE means nothing was stored, so the same request is safe to send again (a Decide
# carries its request_id, an outcome is stored once). The pauses before each retry (+-20%, as gRPC jitters them)
# add up past the second for which a server decides without Redis after a Redis failure (NBA_REDIS_RETRY_AFTER_MS,
# 1000) and then replays its spool; the call's deadline bounds them. Not gRPC's own retry policy (the channel's
# service config): under locust's gevent, a call waiting out its back-off there stalls every user of the process
# for as long (Decides of 3 s against a 2 s deadline, a tenth of the throughput); gevent.sleep lets them run.
RETRY_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
DECIDE_DEADLINE_S = 2.0  # a person is waiting at the kiosk, desk or phone
OUTCOME_DEADLINE_S = 5.0  # nobody waits for an outcome: room for every retry


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--customers", type=int, default=10_000, help="ordinary customers loaded into the service (cust-000001...)"
    )
    parser.add_argument("--outcome-share", type=float, default=0.2, help="share of decisions given an outcome")


@events.init.add_listener
def _population(environment: Any, **kwargs: Any) -> None:
    # Before the run starts (and its run time counts): generating the population takes a second or two.
    if not isinstance(environment.runner, MasterRunner):
        population_by_kind(population_size(environment))
        # gevent's clock is read once per loop turn: without this, the run-time timer that locust sets next
        # starts from before these seconds and fires at once.
        gevent.get_hub().loop.update_now()


def population_size(environment: Any) -> int:
    options = environment.parsed_options
    return int(options.customers) if options is not None else 10_000


@dataclass(frozen=True)
class Customers:
    """The ids a touchpoint meets, by kind: ordinary ones, those with a problem (incident, complaint, open
    problem; the personas among them), and ``unknown_share`` of ids the service has never seen."""

    ordinary: tuple[str, ...]
    troubled: tuple[str, ...]
    troubled_share: float
    unknown_share: float
    population: int

    def pick(self) -> str:
        draw = random.random()
        if draw < self.unknown_share:
            return f"cust-{random.randrange(self.population + 1, 1_000_000):06d}"
        if draw < self.unknown_share + self.troubled_share:
            return random.choice(self.troubled)
        return random.choice(self.ordinary)


@functools.cache
def population_by_kind(customers: int) -> dict[str, tuple[str, ...]]:
    """Ids of the demo population by domain and by whether they have a problem the service should see."""
    kinds: dict[str, list[str]] = {"airline": [], "airline_troubled": [], "bank": [], "bank_troubled": []}
    for profile in generate_population(customers, now=0.0):
        troubled = (
            profile["last_incident_type"] != "none"
            or profile["complaints_12m"] != "0"
            or bool(profile.get("open_problem"))
        )
        kinds[profile["domain"] + ("_troubled" if troubled else "")].append(profile["customer_id"])
    return {kind: tuple(ids) for kind, ids in kinds.items()}


def a_flight() -> dict[str, str]:
    """A check-in's context: long-haul flights have three-digit numbers (AZ611), short-haul ones four."""
    long_haul = random.random() < LONG_HAUL_SHARE
    number = random.randrange(600, 800) if long_haul else random.randrange(1000, 2100)
    cabin = "business" if random.random() < BUSINESS_CABIN_SHARE else "economy"
    return {"flight": f"AZ{number}", "cabin": cabin}


class TouchpointUser(User):
    """A touchpoint calling nba.v1.DecisionService; every call is reported to locust as a request event."""

    abstract = True
    wait_time = between(0.0, 0.01)
    touchpoint: pb.Touchpoint = pb.TOUCHPOINT_UNSPECIFIED

    def customers(self, by_kind: dict[str, tuple[str, ...]], population: int) -> Customers:
        raise NotImplementedError

    def request_context(self, customer_id: str) -> dict[str, str]:
        return {}

    def on_start(self) -> None:
        options = self.environment.parsed_options
        population = population_size(self.environment)
        self.outcome_share = float(options.outcome_share) if options is not None else 0.2
        self.mix = self.customers(population_by_kind(population), population)
        # A connection of its own, as a separate device has (gRPC shares one per target by default): the server's
        # processes share the port connection by connection, so one shared connection would load one of them.
        self.channel = grpc.insecure_channel(
            self.host or "127.0.0.1:50051", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.stub = pb_grpc.DecisionServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, method: Callable[..., Any], request: Any, deadline_s: float, name: Callable[[Any], str]) -> Any:
        """One call, retried on UNAVAILABLE within ``deadline_s``, reported as one locust request named
        ``name(reply)`` (reply None when it failed: a failure); each attempt answered UNAVAILABLE and retried is
        reported too, as ``<name> UNAVAILABLE, retried`` (not a failure). Returns the reply."""
        started = time.perf_counter()
        deadline = started + deadline_s
        reply, error = None, None
        for backoff in (*RETRY_BACKOFF_S, None):
            attempt = time.perf_counter()
            try:
                reply, error = method(request, timeout=max(deadline - attempt, 0.001)), None
                break
            except grpc.RpcError as exc:
                error = exc
            pause = backoff * random.uniform(0.8, 1.2) if backoff is not None else None
            if error.code() != grpc.StatusCode.UNAVAILABLE or pause is None or time.perf_counter() + pause > deadline:
                break
            self._report(f"{name(None)} UNAVAILABLE, retried", attempt, None, None)
            gevent.sleep(pause)
        self._report(name(reply), started, reply, error)
        return reply

    def _report(self, name: str, started: float, reply: Any, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=reply.ByteSize() if reply is not None else 0,
            exception=error,
            context={},
        )

    @task
    def decide(self) -> None:
        customer_id = self.mix.pick()
        request = pb.DecideRequest(
            customer_id=customer_id,
            touchpoint=self.touchpoint,
            context=self.request_context(customer_id),
            request_id=uuid.uuid4().hex,
        )
        reply = self._call(
            self.stub.Decide, request, DECIDE_DEADLINE_S, functools.partial(decide_name, self.touchpoint)
        )
        if reply is None or not reply.actions or random.random() >= self.outcome_share:
            return
        outcome = random.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
        action = random.choice(reply.actions)
        self._call(
            self.stub.RecordOutcome,
            pb.RecordOutcomeRequest(decision_id=reply.decision_id, action_id=action.action_id, outcome=outcome),
            OUTCOME_DEADLINE_S,
            lambda _: "RecordOutcome",
        )


def decide_name(touchpoint: pb.Touchpoint, reply: pb.DecideResponse | None) -> str:
    """The request name of a decision: ``Decide <touchpoint>``, with ``degraded: <codes>`` when it degraded."""
    name = f"Decide {pb.Touchpoint.Name(touchpoint)}"
    if reply is not None and reply.degraded:
        return f"{name} degraded: {', '.join(sorted(reply.degraded_codes)) or 'unspecified'}"
    return name


class KioskCheckIn(TouchpointUser):
    weight = 4
    touchpoint = pb.CHECKIN_KIOSK

    def customers(self, by_kind: dict[str, tuple[str, ...]], population: int) -> Customers:
        troubled = (*by_kind["airline_troubled"], DEMO_IFE_GOLD, DEMO_ITALIAN)
        return Customers(by_kind["airline"], troubled, troubled_share=0.1, unknown_share=0.05, population=population)

    def request_context(self, customer_id: str) -> dict[str, str]:
        return a_flight()


class AgentCheckIn(KioskCheckIn):
    weight = 2
    touchpoint = pb.CHECKIN_AGENT

    def customers(self, by_kind: dict[str, tuple[str, ...]], population: int) -> Customers:
        troubled = (*by_kind["airline_troubled"], DEMO_IFE_GOLD, DEMO_ITALIAN)
        return Customers(by_kind["airline"], troubled, troubled_share=0.2, unknown_share=0.05, population=population)


class BranchTeller(TouchpointUser):
    weight = 2
    touchpoint = pb.BRANCH_TELLER

    def customers(self, by_kind: dict[str, tuple[str, ...]], population: int) -> Customers:
        troubled = (*by_kind["bank_troubled"], DEMO_BANK_OPEN_ISSUE)
        return Customers(by_kind["bank"], troubled, troubled_share=0.12, unknown_share=0.03, population=population)


class IvrCall(TouchpointUser):
    weight = 2
    touchpoint = pb.IVR

    def customers(self, by_kind: dict[str, tuple[str, ...]], population: int) -> Customers:
        ordinary = (*by_kind["airline"], *by_kind["bank"])
        troubled = (*by_kind["airline_troubled"], *by_kind["bank_troubled"], DEMO_IFE_GOLD, DEMO_ITALIAN)
        self.airline = frozenset(by_kind["airline"] + by_kind["airline_troubled"] + (DEMO_IFE_GOLD, DEMO_ITALIAN))
        return Customers(ordinary, troubled, troubled_share=0.15, unknown_share=0.05, population=population)

    def request_context(self, customer_id: str) -> dict[str, str]:
        if customer_id in self.airline and random.random() < 0.5:
            return {"flight": a_flight()["flight"]}
        return {}
