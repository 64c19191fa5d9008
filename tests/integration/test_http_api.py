"""The HTTP/JSON API against the real service: it answers exactly what gRPC answers, refuses what gRPC refuses
with the same message (and a proper HTTP status), and degrades the same way when Redis is down."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from http.client import HTTPConnection
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import json_format

from decision.app import Service
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_keys import KeyLayout
from tests.helpers import forget_offers, fresh_flight, service_settings

KEYS = KeyLayout()

# Each test a new visit: the contact policy's offer limits do not carry over from one test to the next.
pytestmark = pytest.mark.usefixtures("fresh_contact_history")

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503}
TELLER_REQUEST = {"customerId": "demo-bank-open-issue", "touchpoint": "BRANCH_TELLER"}


def http(url: str, body: bytes | dict | None = None, method: str = "POST") -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body) of one request; HTTP errors are answers too."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def accepted(decision: dict) -> dict:
    """The JSON RecordOutcomeRequest accepting the decision's first action."""
    return {"decisionId": decision["decisionId"], "actionId": decision["actions"][0]["actionId"], "outcome": "ACCEPTED"}


def as_json(message: Any) -> dict:
    return json_format.MessageToDict(message)


@pytest.fixture(scope="module")
def base(service: Service) -> str:
    assert service.http is not None
    return service.http.url


# -- the same answer as gRPC --------------------------------------------------------------------------------

REQUESTS = [
    pb.DecideRequest(customer_id="demo-bank-open-issue", touchpoint=pb.BRANCH_TELLER),
    pb.DecideRequest(customer_id="demo-bank-open-issue", touchpoint=pb.BRANCH_TELLER, context={"language": "it"}),
    pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK, context={"cabin": "economy"}),
    pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.IVR, max_actions=5),
    pb.DecideRequest(customer_id="nobody-we-know", touchpoint=pb.CONTACT_CENTER),
]
IDS = ["teller", "teller-italian", "kiosk-upgrade", "ivr", "unknown"]


def with_fresh_flight(request: pb.DecideRequest) -> pb.DecideRequest:
    copy = pb.DecideRequest()
    copy.CopyFrom(request)
    if request.customer_id == "demo-ife-gold":
        copy.context["flight"] = fresh_flight()  # each test its own upgrade seats
    return copy


@pytest.mark.parametrize("request_", REQUESTS, ids=IDS)
@pytest.mark.parametrize("first", ["grpc", "http"])
def test_the_json_api_answers_exactly_what_grpc_answers(stub, base, request_, first):
    """One request_id, so both name the same decision: whichever front end decided, the other returns it."""
    request = with_fresh_flight(request_)
    request.request_id = uuid.uuid4().hex
    if first == "http":
        status, _, by_http = http(f"{base}/v1/decide", as_json(request))
        by_grpc = as_json(stub.Decide(request, timeout=5))
    else:
        by_grpc = as_json(stub.Decide(request, timeout=5))
        status, _, by_http = http(f"{base}/v1/decide", as_json(request))
    assert status == 200
    second = by_grpc if first == "http" else by_http
    assert second.pop("answeredBefore") is True, "the second front end returns the decision, saying so"
    assert by_http == by_grpc
    assert by_http["requestId"] == request.request_id and by_http["actions"]


@pytest.mark.parametrize("request_", REQUESTS, ids=IDS)
def test_fresh_decisions_are_the_same_but_for_their_ids(stub, base, request_, service):
    """No request_id: two separate decisions, one per front end, identical in everything they decided."""
    request = with_fresh_flight(request_)
    by_grpc = as_json(stub.Decide(request, timeout=5))
    forget_offers(service, request.customer_id)  # the same inputs: the first answer's offers not counted
    status, _, by_http = http(f"{base}/v1/decide", as_json(request))
    assert status == 200
    assert by_http["decisionId"] != by_grpc["decisionId"]
    for reply in (by_grpc, by_http):
        del reply["decisionId"], reply["requestId"]
        reply.get("features", {}).pop("ageMs", None)  # the profile aged between the two calls
    assert by_http == by_grpc


def test_proto_field_names_and_unknown_fields_are_accepted_as_grpc_accepts_them(base):
    body = {"customer_id": "demo-bank-open-issue", "touchpoint": 4, "max_actions": 1, "added_in_v2": {"x": 1}}
    status, _, reply = http(f"{base}/v1/decide", body)
    assert status == 200 and len(reply["actions"]) == 1


# -- the same refusals as gRPC ------------------------------------------------------------------------------

BAD_DECISIONS = {
    "empty id": pb.DecideRequest(customer_id="", touchpoint=pb.BRANCH_TELLER),
    "10,000-character id": pb.DecideRequest(customer_id="x" * 10_000, touchpoint=pb.BRANCH_TELLER),
    "id with spaces": pb.DecideRequest(customer_id="bad id", touchpoint=pb.BRANCH_TELLER),
    "no touchpoint": pb.DecideRequest(customer_id="demo-italian"),
    "unknown touchpoint number": pb.DecideRequest(customer_id="demo-italian", touchpoint=99),
    "33 context entries": pb.DecideRequest(
        customer_id="demo-italian", touchpoint=pb.WEB, context={f"k{i}": "v" for i in range(33)}
    ),
    "context key": pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, context={"Flight No": "AZ1"}),
    "context value": pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, context={"flight": "x" * 300}),
    "max_actions": pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, max_actions=21),
    "request_id": pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB, request_id="has spaces"),
}


@pytest.mark.parametrize("request_", BAD_DECISIONS.values(), ids=BAD_DECISIONS.keys())
def test_bad_decisions_are_refused_with_grpcs_message_and_status(stub, base, request_):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Decide(request_, timeout=5)
    status, _, body = http(f"{base}/v1/decide", as_json(request_))
    assert status == HTTP_STATUS[caught.value.code().name]
    assert body["error"]["message"] == caught.value.details()
    assert body["error"]["status"] == caught.value.code().name
    assert body["error"]["code"] == status
    assert body["error"]["field"] == re.match(r"[a-z_]+", caught.value.details()).group(0)


def test_bad_outcomes_are_refused_with_grpcs_message_and_status(stub, base):
    decision = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5)
    action = decision.actions[0].action_id
    bad = [
        pb.RecordOutcomeRequest(decision_id="not-hex", action_id=action, outcome=pb.ACCEPTED),
        pb.RecordOutcomeRequest(decision_id="0" * 32, action_id=action, outcome=pb.ACCEPTED),  # NOT_FOUND
        pb.RecordOutcomeRequest(decision_id=decision.decision_id, action_id="not_offered", outcome=pb.ACCEPTED),
        pb.RecordOutcomeRequest(decision_id=decision.decision_id, action_id=action),  # no outcome
    ]
    codes = []
    for request in bad:
        with pytest.raises(grpc.RpcError) as caught:
            stub.RecordOutcome(request, timeout=5)
        status, _, body = http(f"{base}/v1/outcomes", as_json(request))
        assert status == HTTP_STATUS[caught.value.code().name]
        assert body["error"]["message"] == caught.value.details()
        codes.append(status)
    assert codes == [400, 404, 400, 400]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the request body is not valid JSON: "),
        (b"[1, 2]", "the request body must be a JSON object (an nba.v1.DecideRequest)"),
        (b"", "the request body is not valid JSON: "),
        ({"customerId": 5, "touchpoint": "WEB"}, "customer_id: must be a string; got 5"),
        ({"customerId": "a", "touchpoint": "FAX"}, "touchpoint: must be one of CHECKIN_KIOSK, CHECKIN_AGENT, IVR"),
        ({"customerId": "a", "touchpoint": "WEB", "context": {"a": 1}}, "context: must be an object of text values"),
        ({"customerId": "a", "touchpoint": "WEB", "context": ["a"]}, "context: must be an object of text values"),
        ({"customerId": "a", "touchpoint": "WEB", "maxActions": "three"}, "max_actions: must be a whole number"),
        ({"customerId": "a", "touchpoint": "WEB", "maxActions": 2.5}, "max_actions: must be a whole number"),
        (b'{"customerId": "a\xff", "touchpoint": "WEB"}', "customer_id: must be valid UTF-8 text"),
        (b'{"customerId": "a", "touchpoint": "WEB", "context": {"flight": "\\ud800"}}', "context[flight]: must be"),
        (b'{"customerId": "a", "touchpoint": "WEB", "context": {"fl\xffght": "AZ1"}}', "context (a key): must be"),
        (b'{"customerId": "a", "touchpoint": "WEB", "context": ["\xff"]}', "context: must be an object of text values"),
    ],
    ids=[
        "malformed",
        "array",
        "empty body",
        "number id",
        "touchpoint name",
        "context value type",
        "context list",
        "max_actions text",
        "max_actions fraction",
        "invalid utf-8",
        "lone surrogate",
        "invalid utf-8 key",
        "invalid utf-8 in a list",
    ],
)
def test_json_that_cannot_be_read_is_refused_naming_the_field(base, body, message):
    status, _, reply = http(f"{base}/v1/decide", body)
    assert status == 400, reply
    assert reply["error"]["status"] == "INVALID_ARGUMENT"
    assert reply["error"]["message"].startswith(message)
    if message[0].isalpha() and not message.startswith("the "):
        assert reply["error"]["field"] == re.match(r"[a-z_]+", message).group(0)


def test_a_body_over_the_grpc_message_limit_is_refused(base):
    status, _, reply = http(f"{base}/v1/decide", b'{"customerId": "' + b"x" * (1 << 20) + b'"}')
    assert status == 413 and reply["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_wrong_method_and_unknown_path_answer_json_errors(base):
    status, headers, body = http(f"{base}/v1/decide", method="GET")
    assert status == 405 and headers["allow"] == "POST" and body["error"]["status"] == "UNIMPLEMENTED"
    status, _, body = http(f"{base}/v1/nothing-here", {})
    assert status == 404 and body["error"]["message"] == "POST /v1/nothing-here: Not Found; see /openapi.json"


def test_answers_on_a_kept_alive_connection_are_not_held_back_by_delayed_acks(service):
    """Without TCP_NODELAY on accepted connections each answer waits ~40 ms for the client's delayed ACK."""
    connection = HTTPConnection(service.http.host, service.http.port, timeout=5)
    started = time.monotonic()
    for _ in range(10):
        connection.request("GET", "/openapi.json")
        assert connection.getresponse().read()
    elapsed = time.monotonic() - started
    connection.close()
    assert elapsed < 0.25, f"10 answers took {elapsed:.2f} s"


# -- outcomes -----------------------------------------------------------------------------------------------


def test_an_outcome_recorded_over_http_is_in_the_outcome_log_once(base, redis_client: redis.Redis):
    status, _, decision = http(f"{base}/v1/decide", TELLER_REQUEST)
    assert status == 200
    outcome = accepted(decision)
    status, _, receipt = http(f"{base}/v1/outcomes", outcome)
    assert status == 200 and receipt["outcomeId"] and "duplicate" not in receipt  # false is left out
    status, _, again = http(f"{base}/v1/outcomes", outcome)
    assert status == 200 and again == {"outcomeId": receipt["outcomeId"], "duplicate": True}
    logged = [
        fields
        for _, fields in redis_client.xrevrange(KEYS.outcomes_stream, count=500)
        if fields["decision_id"] == decision["decisionId"]
    ]
    assert len(logged) == 1
    assert logged[0]["action_id"] == outcome["actionId"] and logged[0]["outcome"] == "ACCEPTED"
    assert logged[0]["touchpoint"] == "BRANCH_TELLER"


def test_a_final_outcome_changed_over_http_is_refused_with_409(base):
    status, _, decision = http(f"{base}/v1/decide", TELLER_REQUEST)
    assert status == 200
    assert http(f"{base}/v1/outcomes", accepted(decision))[0] == 200
    status, _, refused = http(f"{base}/v1/outcomes", {**accepted(decision), "outcome": "DECLINED"})
    assert status == 409
    assert refused["error"]["status"] == "FAILED_PRECONDITION" and refused["error"]["field"] == "outcome"
    assert "already has ACCEPTED recorded" in refused["error"]["message"]


# -- the OpenAPI document -----------------------------------------------------------------------------------


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        assert name in document["components"]["schemas"], schema["$ref"]
        schema = document["components"]["schemas"][name]
    return schema


def described(document: dict, schema: dict, value: Any, path: str = "$") -> None:
    """Fails unless ``value`` has only the properties, types and enum values the document gives it."""
    schema = resolve(document, schema)
    kind = schema["type"]
    python = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    assert isinstance(value, python[kind]), f"{path}: {value!r} is not {kind}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r}"
    if kind == "array":
        for i, item in enumerate(value):
            described(document, schema["items"], item, f"{path}[{i}]")
    elif kind == "object":
        for key, item in value.items():
            spec = schema.get("properties", {}).get(key) or schema.get("additionalProperties")
            assert spec, f"{path}.{key} is not in the document"
            described(document, spec, item, f"{path}.{key}")


def test_the_openapi_document_describes_both_operations_and_what_they_answer(base, stub):
    status, _, document = http(f"{base}/openapi.json", method="GET")
    assert status == 200 and document["openapi"].startswith("3.")
    decide = document["paths"]["/v1/decide"]["post"]
    outcomes = document["paths"]["/v1/outcomes"]["post"]
    for operation in (decide, outcomes):
        assert {"200", "400", "503"} <= set(operation["responses"])
        resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
    response_schema = decide["responses"]["200"]["content"]["application/json"]["schema"]
    properties = resolve(document, response_schema)["properties"]
    assert set(properties) == {f.json_name for f in pb.DecideResponse.DESCRIPTOR.fields}

    request = {"customerId": "demo-bank-open-issue", "touchpoint": "BRANCH_TELLER", "context": {"language": "it"}}
    described(document, decide["requestBody"]["content"]["application/json"]["schema"], request)
    status, _, reply = http(f"{base}/v1/decide", request)
    described(document, response_schema, reply)
    status, _, error = http(f"{base}/v1/decide", {"customerId": ""})
    described(document, decide["responses"]["400"]["content"]["application/json"]["schema"], error)


# -- Redis down: decisions degrade, outcomes are refused with 503 -------------------------------------------


def test_redis_down_degrades_the_decision_and_refuses_the_outcome_with_503(own_service):
    service, server = own_service
    assert service.http is not None
    base = service.http.url
    status, _, before = http(f"{base}/v1/decide", TELLER_REQUEST)
    assert status == 200 and "degraded" not in before
    server.stop()

    started = time.monotonic()
    status, _, during = http(f"{base}/v1/decide", TELLER_REQUEST)
    assert time.monotonic() - started < 1.0
    assert status == 200 and during["degraded"] is True
    assert "feature_store_unavailable" in during["degradedCodes"] and during["degradedReason"]

    status, _, refused = http(f"{base}/v1/outcomes", accepted(before))
    assert status == 503
    assert refused["error"]["status"] == "UNAVAILABLE"
    assert refused["error"]["message"].startswith("outcome not stored, retry")


def test_http_can_be_turned_off(demo_model_dir, loaded_redis, tmp_path):
    settings = service_settings(loaded_redis.url, demo_model_dir, tmp_path / "data", http_enabled=False)
    with Service.start(settings) as running:
        assert running.http is None
        with grpc.insecure_channel(running.grpc.target) as channel:
            reply = pb_grpc.DecisionServiceStub(channel).Decide(
                pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5
            )
        assert reply.actions
