"""Whatever bytes or JSON a caller sends, the real servers answer a status a caller can act on, naming the field;
never INTERNAL / UNKNOWN (gRPC) or 500 (HTTP), and never an echo of the caller's text so long that the answer
itself fails."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decision.app import Service
from decision.pb import decision_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
ACTIONABLE = {grpc.StatusCode.OK, INVALID, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
CONTEXT = pb.DecideRequest.DESCRIPTOR.fields_by_name["context"].number
# Examples are few and small: each is a real call to the shared service on two busy cores.
BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            return bytes(out + bytes([low]))
        out.append(low | 0x80)


def delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


VALID_DECIDE = pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB).SerializeToString()


def raw_call(channel: grpc.Channel, method: str) -> Callable[..., bytes]:
    """The method with identity serializers: the bytes go on the wire exactly as given."""
    return channel.unary_unary(f"/nba.v1.DecisionService/{method}", request_serializer=None)


def status_of(call: Callable[..., bytes], data: bytes) -> tuple[grpc.StatusCode, str]:
    try:
        call(data, timeout=10)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        (tag(1, 2) + b"\x09fl", "context: "),  # a key promising 9 bytes, holding 2
        (tag(1, 2) + b"\x06flight" + tag(2, 2) + b"\x05AZ", "context[flight]: "),  # a truncated value
        (b"\xf8\xff\xff\xff\x7f\x01", "context: "),  # field number beyond protobuf's largest
        (tag(3, 3), "context: "),  # a group that is never closed
        (tag(3, 4), "context: "),  # a group closed that was never opened
        (bytes([3 << 3 | 6]), "context: "),  # wire type 6 does not exist
        (b"\x00\x01", "context: "),  # field number 0
        (tag(1, 2) + b"\x01\xff", "context (a key): must be valid UTF-8 text"),
        (tag(1, 2) + b"\x06flight" + tag(2, 2) + b"\x02\xc3(", "context[flight]: must be valid UTF-8 text"),
    ],
    ids=[
        "truncated key",
        "truncated value",
        "field number too large",
        "open group",
        "stray end group",
        "wire type 6",
        "field 0",
        "key not utf-8",
        "value not utf-8",
    ],
)
def test_a_garbled_context_entry_is_refused_naming_the_context(channel, entry, named):
    code, details = status_of(raw_call(channel, "Decide"), VALID_DECIDE + delimited(CONTEXT, entry))
    assert code == INVALID, details
    assert details.startswith(named), details


def test_a_truncated_top_level_field_is_named(channel):
    data = VALID_DECIDE + tag(4, 2) + b"\x20abc"  # request_id promising 32 bytes, holding 3
    code, details = status_of(raw_call(channel, "Decide"), data)
    assert code == INVALID and details.startswith("request_id: "), details


def test_a_long_key_is_shown_truncated(channel):
    entry = tag(1, 2) + varint(5000) + b"k" * 5000 + tag(2, 2) + b"\x02\xc3("
    code, details = status_of(raw_call(channel, "Decide"), VALID_DECIDE + delimited(CONTEXT, entry))
    assert code == INVALID and "must be valid UTF-8 text" in details
    assert len(details) < 200, details


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with a few bytes changed, inserted or dropped, or cut short."""

    def apply(edits: list[tuple[int, int, int]]) -> bytes:
        data = bytearray(valid)
        for kind, where, byte in edits:
            at = where % (len(data) + 1)
            if kind == 0 and at < len(data):
                data[at] = byte
            elif kind == 1:
                data.insert(at, byte)
            elif kind == 2 and at < len(data):
                del data[at]
            elif kind == 3:
                del data[at:]
        return bytes(data)

    edit = st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255))
    return st.lists(edit, min_size=1, max_size=4).map(apply)


decide_bytes = st.builds(
    pb.DecideRequest,
    customer_id=st.sampled_from(["demo-italian", "demo-ife-gold", "c1"]),
    touchpoint=st.integers(0, 8),
    context=st.dictionaries(st.sampled_from(["flight", "language", "cabin"]), st.text(max_size=8), max_size=3),
    request_id=st.sampled_from(["", "r1"]),
).map(lambda m: m.SerializeToString())
outcome_bytes = st.builds(
    pb.RecordOutcomeRequest,
    decision_id=st.sampled_from(["0" * 32, "nothex"]),
    action_id=st.sampled_from(["lounge_pass", "x" * 70]),
    outcome=st.integers(0, 4),
).map(lambda m: m.SerializeToString())


@BOUNDED
@given(
    st.sampled_from(["Decide", "RecordOutcome"]),
    st.binary(max_size=64) | decide_bytes.flatmap(mutated) | outcome_bytes.flatmap(mutated),
)
def test_any_bytes_get_an_answer_a_caller_can_act_on(channel, method, data):
    code, details = status_of(raw_call(channel, method), data)
    assert code in ACTIONABLE, (code, details, data)


# -- RecordOutcome's action_id ------------------------------------------------------------------------------


@pytest.mark.parametrize("action_id", ["x" * 10_000, "lounge pass", "", "é"])
def test_a_malformed_action_id_is_refused_with_its_value_shown_short(stub, action_id):
    decision = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
    with pytest.raises(grpc.RpcError) as caught:
        stub.RecordOutcome(
            pb.RecordOutcomeRequest(decision_id=decision.decision_id, action_id=action_id, outcome=pb.ACCEPTED),
            timeout=5,
        )
    assert caught.value.code() == INVALID
    assert caught.value.details().startswith("action_id: must be 1-64 characters"), caught.value.details()
    assert len(caught.value.details()) < 200


# -- HTTP ---------------------------------------------------------------------------------------------------

HTTP_ANSWERS = {200, 400, 404, 409, 413}


@pytest.fixture(scope="module")
def http_service(service: Service) -> Service:
    assert service.http is not None
    return service


def post(service: Service, path: str, body: bytes) -> tuple[int, dict]:
    assert service.http is not None
    connection = http.client.HTTPConnection(service.http.host, service.http.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


DEEP = 1_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"customerId": "a", "context": ' + b"[" * DEEP + b"]" * DEEP + b"}", "context: "),
        (b'{"customerId": "a", "context": {"flight": ' + b"[" * DEEP + b"]" * DEEP + b"}}", "context: "),
        (b'{"customerId": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", "customer_id: "),
        (b'{"customerId": "a", "extra": ' + b"[" * DEEP + b"]" * DEEP + b"}", "the request body nests"),
        (b"[" * DEEP + b"]" * DEEP, "the request body nests"),
        (b'{"cust\xffomerId": "a", "touchpoint": "WEB"}', "the request body: key 'cust"),
        (b'{"\\ud800": "a"}', "the request body: key '"),
        (b'{"' + b"k" * 5000 + b'\xff": "a"}', "the request body: key 'kkkk"),
        (b'{"customerId": "a", "context": {"' + b"k" * 5000 + b'": "\\ud800"}}', "context[kkkk"),
    ],
    ids=[
        "deep list in context",
        "deep object in a context value",
        "deep object as customer_id",
        "deep unknown field",
        "deep top level",
        "invalid utf-8 in a key",
        "lone surrogate key",
        "long invalid key",
        "long context key with a bad value",
    ],
)
def test_bodies_too_deep_or_with_unreadable_keys_are_refused_naming_the_field(http_service, body, message):
    status, reply = post(http_service, "/v1/decide", body)
    assert status == 400, reply
    assert reply["error"]["status"] == "INVALID_ARGUMENT"
    assert reply["error"]["message"].startswith(message), reply
    assert len(reply["error"]["message"]) < 300, reply
    if message[0] != "t":
        assert reply["error"]["field"] == message.split(":")[0].split("[")[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
field_names = st.sampled_from(
    ["customerId", "customer_id", "touchpoint", "context", "requestId", "maxActions", "decisionId", "actionId",
     "outcome", "x"]
)  # fmt: skip
json_bodies = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=6).map(
    lambda d: json.dumps(d).encode()
)


def garbled(body: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(st.tuples(st.integers(0, 1 << 12), st.binary(max_size=3)), min_size=1, max_size=3).map(
        lambda edits: _splice(body, edits)
    )


def _splice(body: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    for where, bytes_ in edits:
        at = where % (len(body) + 1)
        body = body[:at] + bytes_ + body[at + 1 :]
    return body


@BOUNDED
@given(
    st.sampled_from(["/v1/decide", "/v1/outcomes"]),
    json_bodies | json_bodies.flatmap(garbled) | st.binary(max_size=64),
)
def test_any_body_gets_an_answer_a_caller_can_act_on(http_service, path, body):
    status, reply = post(http_service, path, body)
    assert status in HTTP_ANSWERS, (status, reply, body)


def test_a_malformed_action_id_over_http_is_refused_short(http_service, stub):
    decision = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
    body = {"decisionId": decision.decision_id, "actionId": "x" * 10_000, "outcome": "ACCEPTED"}
    status, reply = post(http_service, "/v1/outcomes", json.dumps(body).encode())
    assert status == 400 and reply["error"]["field"] == "action_id"
    assert len(reply["error"]["message"]) < 200
