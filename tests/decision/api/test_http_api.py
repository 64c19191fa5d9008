"""The JSON form of a request reaches the flow as the very proto message a gRPC caller would send."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decision.api.http_api import error_response, message_from_json
from decision.errors import InvalidArgument
from decision.pb import decision_pb2 as pb

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)  # any text protobuf can hold

decide_requests = st.builds(
    pb.DecideRequest,
    customer_id=text,
    touchpoint=st.integers(min_value=-(2**31), max_value=2**31 - 1),  # unknown numbers too, as gRPC may send
    context=st.dictionaries(text, text, max_size=5),
    request_id=text,
    max_actions=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
outcome_requests = st.builds(
    pb.RecordOutcomeRequest,
    decision_id=text,
    action_id=text,
    outcome=st.integers(min_value=-5, max_value=5),
)


@given(decide_requests, st.booleans())
def test_a_decide_request_survives_its_json_form(request, proto_names):
    body = json_format.MessageToJson(request, preserving_proto_field_name=proto_names).encode()
    assert message_from_json(body, pb.DecideRequest) == request


@given(outcome_requests)
def test_an_outcome_request_survives_its_json_form(request):
    body = json_format.MessageToJson(request).encode()
    assert message_from_json(body, pb.RecordOutcomeRequest) == request


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["customerId", "customer_id", "touchpoint", "context", "requestId", "maxActions", "x"])


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)  # two shared cores under the whole suite
@given(st.dictionaries(field_names, json_values, max_size=6))
def test_any_json_object_is_read_or_refused_as_bad_input_never_anything_else(data):
    try:
        body = json.dumps(data).encode()
    except ValueError:
        return
    try:
        message_from_json(body, pb.DecideRequest)
    except InvalidArgument as refused:
        response = error_response(refused.status, refused.message)
        assert response.status_code == 400 and json.loads(response.body)["error"]["message"]


def test_enum_names_and_numbers_are_both_accepted():
    by_name = message_from_json(b'{"customerId": "c", "touchpoint": "BRANCH_TELLER"}', pb.DecideRequest)
    by_number = message_from_json(b'{"customerId": "c", "touchpoint": 4}', pb.DecideRequest)
    assert by_name == by_number == pb.DecideRequest(customer_id="c", touchpoint=pb.BRANCH_TELLER)


def test_an_unknown_enum_name_is_refused_like_an_unknown_number():
    with pytest.raises(InvalidArgument) as caught:
        message_from_json(b'{"outcome": "MAYBE"}', pb.RecordOutcomeRequest)
    assert caught.value.message == "outcome: must be one of ACCEPTED, DECLINED, IGNORED; got 'MAYBE'"


@pytest.mark.parametrize(
    ("status", "message", "code", "field"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "customer_id: must be 1-64 characters", 400, "customer_id"),
        (grpc.StatusCode.INVALID_ARGUMENT, "context[flight]: values are at most 256 characters", 400, "context"),
        (grpc.StatusCode.NOT_FOUND, "decision_id: no decision 'x' (unknown or expired)", 404, "decision_id"),
        (grpc.StatusCode.UNAVAILABLE, "outcome not stored, retry: Redis is down", 503, None),
        (grpc.StatusCode.INTERNAL, "Decide failed unexpectedly; see the server log", 500, None),
    ],
)
def test_a_grpc_status_becomes_its_http_status_with_the_same_message(status, message, code, field):
    response = error_response(status, message)
    body = json.loads(response.body)
    assert response.status_code == code
    assert body["error"]["message"] == message and body["error"]["status"] == status.name
    assert body["error"].get("field") == field
