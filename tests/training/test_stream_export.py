"""Export of the running service's own decision and outcome streams as a training log (real Redis, real gRPC)."""

from __future__ import annotations

import re
import time
import uuid

import pyarrow as pa
import pytest

from decision.cli import main
from decision.pb import decision_pb2 as pb
from features.redis_server import RedisServer
from features.schema import FeatureSchema
from tests.helpers import fresh_flight
from training.log_import import LogColumns, import_log, read_table
from training.stream_export import export_decision_log

pytestmark = pytest.mark.usefixtures("fresh_contact_history")

SCHEMA = FeatureSchema.load()


def decide(stub, customer: str, touchpoint: int, **context: str) -> pb.DecideResponse:
    request = pb.DecideRequest(
        customer_id=customer, touchpoint=touchpoint, context=context, request_id=uuid.uuid4().hex
    )
    return stub.Decide(request, timeout=5)


@pytest.fixture()
def since_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture()
def decided(stub, since_ms) -> dict[str, pb.DecideResponse]:
    """Three decisions of this test, with outcomes for two of their actions."""
    replies = {
        "gold": decide(stub, "demo-ife-gold", pb.CHECKIN_KIOSK, flight=fresh_flight(), cabin="economy"),
        "italian": decide(stub, "demo-italian", pb.IVR, flight="AZ612"),
        "bank": decide(stub, "demo-bank-open-issue", pb.BRANCH_TELLER),
    }
    gold, bank = replies["gold"], replies["bank"]
    stub.RecordOutcome(
        pb.RecordOutcomeRequest(decision_id=gold.decision_id, action_id=gold.actions[0].action_id, outcome=pb.ACCEPTED),
        timeout=5,
    )
    stub.RecordOutcome(
        pb.RecordOutcomeRequest(decision_id=bank.decision_id, action_id=bank.actions[0].action_id, outcome=pb.DECLINED),
        timeout=5,
    )
    assert all(reply.actions for reply in replies.values())
    return replies


def rows_of(table: pa.Table, decision_id: str) -> list[dict]:
    return [r for r in table.to_pylist() if r["decision_id"] == decision_id]


def test_each_offered_action_is_a_row_with_its_outcome_and_the_features_as_decided(decided, redis_client, service):
    service.flush_log()  # decisions without side effects are logged a moment later
    table = export_decision_log(redis_client, schema=SCHEMA)
    gold = rows_of(table, decided["gold"].decision_id)
    assert [r["action"] for r in gold] == [a.action_id for a in decided["gold"].actions]
    assert [r["rank"] for r in gold] == list(range(1, len(gold) + 1))
    first = gold[0]
    assert first["action"] == "upgrade_first_class"
    assert (first["accepted"], first["outcome"]) == (1, "ACCEPTED")
    assert all((r["accepted"], r["outcome"]) == (0, "") for r in gold[1:])  # no outcome came back for those
    assert first["customer_id"] == "demo-ife-gold" and first["touchpoint"] == "CHECKIN_KIOSK"
    assert first["ctx_cabin"] == "economy" and re.fullmatch(r"[A-Z]{2}[0-9]{4}", first["ctx_flight"])
    assert first["model_version"] == decided["gold"].model_version
    assert first["live_p_accept"] == pytest.approx(decided["gold"].actions[0].propensity)
    # Features as the service parsed them at the decision: the incident's age then, the tier, the domain.
    assert first["last_incident_days"] == pytest.approx(10.0, abs=0.1)
    assert (first["domain"], first["last_incident_type"]) == ("airline", "ife_broken")
    assert abs(first["decided_at"] - time.time()) < 300

    bank = rows_of(table, decided["bank"].decision_id)
    assert (bank[0]["accepted"], bank[0]["outcome"]) == (0, "DECLINED")
    assert bank[0]["domain"] == "bank"

    # Exploration is off in the test service: each first action was chosen for sure (propensity 1), and no
    # propensity describes how the later ranks were chosen.
    for decision in decided.values():
        rows = rows_of(table, decision.decision_id)
        assert [r["propensity"] for r in rows] == [1.0] + [None] * (len(rows) - 1)
        assert {(r["arm"], r["explored"], r["shadow_action"]) for r in rows} == {("champion", False, "")}


def test_chosen_only_keeps_each_decisions_first_action_with_its_propensity(since_ms, decided, redis_client, service):
    service.flush_log()
    table = export_decision_log(redis_client, schema=SCHEMA, chosen_only=True, since_ms=since_ms)
    for decision in decided.values():
        rows = rows_of(table, decision.decision_id)
        assert [(r["rank"], r["action"], r["propensity"]) for r in rows] == [
            (1, decision.actions[0].action_id, decision.policy.propensity)
        ]


def test_answered_only_keeps_the_actions_whose_outcome_came_back(since_ms, decided, redis_client):
    table = export_decision_log(redis_client, schema=SCHEMA, answered_only=True, since_ms=since_ms)
    ids = {decided[k].decision_id for k in ("gold", "italian", "bank")}
    mine = [r for r in table.to_pylist() if r["decision_id"] in ids]
    assert sorted(r["outcome"] for r in mine) == ["ACCEPTED", "DECLINED"]


def test_the_export_command_writes_a_log_the_importer_reads_with_the_services_encoding(
    capsys, decided, loaded_redis: RedisServer, tmp_path
):
    out = tmp_path / "export.parquet"
    assert main(["export-log", "--redis-url", loaded_redis.url, "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("exported ")
    log = import_log(out, LogColumns(action="action", outcome="accepted"), SCHEMA)
    assert log.encoding.servable and log.columns.time == "decided_at"
    assert list(log.columns.features or ()) == FeatureSchema.load().model_feature_names
    assert log.propensities is None
    assert read_table(out).num_rows == len(log)
