from __future__ import annotations

from decision.api.wire_format import invalid_utf8_field
from decision.pb import decision_pb2 as pb


def test_names_a_bad_context_value() -> None:
    data = pb.DecideRequest(customer_id="c1", context={"a": "ok", "flight": "AZ610"}).SerializeToString()
    assert invalid_utf8_field(data.replace(b"AZ610", b"AZ\xc310"), pb.DecideRequest.DESCRIPTOR) == "context[flight]"


def test_names_a_bad_top_level_string() -> None:
    data = pb.DecideRequest(customer_id="abcde").SerializeToString().replace(b"abcde", b"ab\xffde")
    assert invalid_utf8_field(data, pb.DecideRequest.DESCRIPTOR) == "customer_id"


def test_valid_message_has_no_culprit() -> None:
    data = pb.DecideRequest(customer_id="c1", context={"language": "zh-Hant", "note": "歡迎"}).SerializeToString()
    assert invalid_utf8_field(data, pb.DecideRequest.DESCRIPTOR) is None
