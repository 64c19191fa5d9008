"""An outcome answered UNAVAILABLE because its decision waits in the spool is stored when the caller retries it,
even when no other decision comes in meanwhile: every caller may be retrying outcomes (the locust touchpoints
after a Redis hiccup were), and a spool replayed only by the next decision written kept them all waiting."""

from __future__ import annotations

import time

import grpc
import redis

from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc


def test_a_retried_outcome_of_a_spooled_decision_is_stored_without_another_decision(own_service):
    service, server = own_service
    client = redis.Redis.from_url(server.url, decode_responses=True)
    with grpc.insecure_channel(service.grpc.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # Redis answers reads and refuses writes: the decision is spooled
        try:
            reply = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
            service.flush_log()
        finally:
            client.config_set("maxmemory", 0)
        outcome = pb.RecordOutcomeRequest(
            decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=pb.ACCEPTED
        )
        receipt, answers = None, []
        deadline = time.monotonic() + 5  # the own_service skips Redis for 200 ms after a failure
        while receipt is None and time.monotonic() < deadline:
            try:
                receipt = stub.RecordOutcome(outcome, timeout=2)
            except grpc.RpcError as exc:
                answers.append(exc.code())
                time.sleep(0.1)
    client.close()
    assert receipt is not None, f"never stored: {answers}"
    assert receipt.outcome_id and not receipt.duplicate
    assert set(answers) <= {grpc.StatusCode.UNAVAILABLE}, answers
    assert answers, "the decision was never spooled: nothing tested"
