"""A locust gRPC user for load tests of a running service.

    locust -f benchmarks/locustfile.py --headless -u 8 -r 8 -t 30s --host 127.0.0.1:50051

Each user checks in demo customers at random touchpoints and records an outcome for a share of the decisions.
For more load than one machine gives, run locust in distributed mode (--master / --worker).
"""

from __future__ import annotations

import random
import time
import uuid

import grpc
from locust import User, between, task

from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from training.population import PERSONAS

TOUCHPOINTS = [t for t in pb.Touchpoint.values() if t != pb.TOUCHPOINT_UNSPECIFIED]


class DecisionUser(User):
    """A touchpoint calling nba.v1.DecisionService; every call is reported to locust as a request event."""

    wait_time = between(0.0, 0.01)
    customers = [*PERSONAS, *(f"cust-{i:06d}" for i in range(1, 10_001))]

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(self.host or "127.0.0.1:50051")
        self.stub = pb_grpc.DecisionServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, name: str, method, request):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        reply, error = None, None
        try:
            reply = method(request, timeout=1.0)
        except grpc.RpcError as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=reply.ByteSize() if reply is not None else 0,
            exception=error,
            context={},
        )
        return reply

    @task
    def check_in(self) -> None:
        request = pb.DecideRequest(
            customer_id=random.choice(self.customers),
            touchpoint=random.choice(TOUCHPOINTS),
            context={"flight": f"AZ{random.randrange(100, 999)}"},
            request_id=uuid.uuid4().hex,
        )
        reply = self._call("Decide", self.stub.Decide, request)
        if reply is not None and reply.actions and random.random() < 0.2:
            outcome = random.choice([pb.ACCEPTED, pb.DECLINED, pb.IGNORED])
            self._call(
                "RecordOutcome",
                self.stub.RecordOutcome,
                pb.RecordOutcomeRequest(
                    decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=outcome
                ),
            )
