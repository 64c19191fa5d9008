"""The gRPC front end: proto -> domain, call the flow, domain -> proto. Nothing else lives here.

``DecisionApi`` is that conversion without the transport; the HTTP/JSON API (``http_api``) calls the same one.

Domain errors become their gRPC status with the message naming the field; anything unexpected is logged with
its traceback and returned as INTERNAL. The standard health service and server reflection are served too.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from decision import validation
from decision.api.wire_format import unreadable_field
from decision.domain import Decision, DecisionRequest
from decision.errors import DecisionError
from decision.flow import DecisionFlow
from decision.pb import decision_pb2 as pb

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name
MAX_MESSAGE_BYTES = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Unreadable:
    """A request protobuf refused; ``field`` is the culprit where it can be found."""

    reason: str


def _lenient(message_type: Any) -> Callable[[bytes], Any]:
    """A deserializer that hands unreadable requests to the handler, which then names the bad field."""

    def parse(data: bytes) -> Any:
        # Nothing may escape a deserializer: gRPC would answer INTERNAL and log two tracebacks per request.
        try:
            return message_type.FromString(data)
        except DecodeError:
            pass
        try:
            found = unreadable_field(data, message_type.DESCRIPTOR)
        except Exception:
            log.exception("finding the culprit in an unreadable %s failed", message_type.DESCRIPTOR.full_name)
            found = None
        if found is not None and found.field:
            return Unreadable(f"{found.field}: {found.problem}")
        problem = found.problem if found is not None else "protobuf cannot read it"
        return Unreadable(f"the request is not a valid {message_type.DESCRIPTOR.full_name} message: {problem}")

    return parse


def _handled(method: Callable[[Any, Any, grpc.ServicerContext], T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        if isinstance(request, Unreadable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            return method(self, request, context)
        except DecisionError as exc:
            context.abort(exc.status, exc.message)
        except Exception:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed unexpectedly; see the server log")
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


class DecisionApi:
    """``nba.v1.DecisionService`` on proto messages, for every transport (gRPC here, HTTP/JSON in ``http_api``).

    Request proto -> validated domain request -> the flow -> response proto. Bad input and failed dependencies
    raise DecisionError with its status; each transport only maps that status to its own.
    """

    def __init__(self, flow: DecisionFlow, max_context_entries: int, default_max_actions: int) -> None:
        self.flow = flow
        self.max_context_entries = max_context_entries
        self.default_max_actions = default_max_actions

    def decide(self, request: pb.DecideRequest, deadline: float | None) -> pb.DecideResponse:
        """``deadline`` is the absolute time.monotonic() by which the answer must be sent, or None."""
        domain_request = DecisionRequest(
            customer_id=validation.customer_id(request.customer_id),
            touchpoint=validation.touchpoint(request.touchpoint),
            context=validation.context(request.context, self.max_context_entries, self.flow.schema.context),
            request_id=validation.request_id(request.request_id),
            max_actions=validation.max_actions(request.max_actions, self.default_max_actions),
            deadline=deadline,
        )
        return decision_to_proto(self.flow.decide(domain_request))

    def record_outcome(self, request: pb.RecordOutcomeRequest) -> pb.RecordOutcomeResponse:
        receipt = self.flow.record_outcome(
            validation.decision_id(request.decision_id),
            validation.action_id(request.action_id),
            validation.outcome(request.outcome),
        )
        return pb.RecordOutcomeResponse(outcome_id=receipt.outcome_id, duplicate=receipt.duplicate)


class DecisionServicer:
    """``nba.v1.DecisionService`` over gRPC: the call's deadline in, DecisionError out as the call's status."""

    def __init__(self, api: DecisionApi) -> None:
        self.api = api

    @_handled
    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:  # noqa: N802
        remaining = context.time_remaining()
        return self.api.decide(request, None if remaining is None else time.monotonic() + remaining)

    @_handled
    def RecordOutcome(  # noqa: N802
        self, request: pb.RecordOutcomeRequest, context: grpc.ServicerContext
    ) -> pb.RecordOutcomeResponse:
        return self.api.record_outcome(request)

    def handler(self) -> grpc.GenericRpcHandler:
        methods = {
            "Decide": grpc.unary_unary_rpc_method_handler(
                self.Decide, _lenient(pb.DecideRequest), pb.DecideResponse.SerializeToString
            ),
            "RecordOutcome": grpc.unary_unary_rpc_method_handler(
                self.RecordOutcome,
                _lenient(pb.RecordOutcomeRequest),
                pb.RecordOutcomeResponse.SerializeToString,
            ),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


def decision_to_proto(d: Decision) -> pb.DecideResponse:
    """The response message, built in place: a third of the cost of nesting messages made from keywords (each
    nested message is built, then copied into its parent)."""
    response = pb.DecideResponse(
        decision_id=d.decision_id,
        request_id=d.request_id,
        model_version=d.model_version,
        rules_version=d.rules_version,
        catalogue_version=d.catalogue_version,
        degraded=d.degraded,
        degraded_reason=d.degraded_reason,
        degraded_codes=d.degraded_codes,
        answered_before=d.answered_before,
    )
    add: Any = response.actions.add
    for a in d.actions:
        add(
            action_id=a.action_id,
            kind=a.kind,
            title=a.title,
            score=a.score,
            propensity=a.propensity,
            value=a.value,
            mandatory=a.mandatory,
            reason_codes=a.reason_codes,
            rank=a.rank,
            message=a.message,
        )
    e, explanation = d.explanation, response.explanation
    explanation.language = e.language
    explanation.delivery = e.delivery
    explanation.text = e.text
    explanation.greeting = e.greeting
    explanation.ranking_margin = e.ranking_margin
    add = explanation.rules_fired.add
    for r in e.rules_fired:
        add(rule_id=r.rule_id, directive=r.directive, action_id=r.action_id, reason_code=r.reason_code)
    add = explanation.top_features.add
    for f in e.top_features:
        add(feature=f.feature, label=f.label, contribution=f.contribution, value=f.value)
    add = explanation.suppressed.add
    for s in e.suppressed:
        add(action_id=s.action_id, reason_code=s.reason_code, source=s.source)
    # Assigning a field makes a nested message present, as building it from keywords did (even when empty).
    freshness = response.features
    freshness.found = d.features.found
    freshness.age_ms = d.features.age_ms
    freshness.stale = d.features.stale
    freshness.max_age_ms = d.features.max_age_ms
    add = response.follow_ups.add
    for u in d.follow_ups:
        add(kind=u.kind, action_id=u.action_id, language=u.language, text=u.text, channel=u.channel)
    channel = response.channel
    channel.channel = d.channel.channel
    channel.reason_code = d.channel.reason_code
    channel.text = d.channel.text
    add = response.open_items.add
    for i in d.open_items:
        add(kind=i.kind, text=i.text, detailed=i.detailed)
    policy = response.policy
    policy.arm = d.policy.arm
    policy.explored = d.policy.explored
    policy.propensity = d.policy.propensity
    policy.exploration_share = d.policy.exploration_share
    policy.shadow_model_version = d.policy.shadow_model_version
    policy.shadow_action_id = d.policy.shadow_action_id
    return response


class GrpcServer:
    """The gRPC server with the decision service, health checks and reflection.

    Health: "nba.v1.DecisionService" is SERVING while the server runs (it answers, degraded if need be); the
    overall "" is NOT_SERVING while ``set_degraded(True)`` holds (decisions cannot be stored: Redis is gone), so
    a load balancer or a Kubernetes readiness probe (which checks "" by default) sends calls elsewhere.
    """

    def __init__(
        self, servicer: DecisionServicer, host: str, port: int, threads: int, reuse_port: bool = False
    ) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decide"),
            options=[
                ("grpc.so_reuseport", 1 if reuse_port else 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self.server.add_generic_rpc_handlers((servicer.handler(),))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC to {host}:{port}")
        self.host = host
        self._degraded = False

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self.server.start()
        self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self.set_degraded(self._degraded)

    def set_degraded(self, degraded: bool) -> None:
        """Whether decisions can be stored: the overall health "" follows it (ignored once stopping)."""
        self._degraded = degraded
        status = health_pb2.HealthCheckResponse.NOT_SERVING if degraded else health_pb2.HealthCheckResponse.SERVING
        self.health.set("", status)

    def stop(self, grace_s: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()

    def wait(self) -> None:
        self.server.wait_for_termination()
