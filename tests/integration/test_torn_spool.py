"""A spool file cut short (power loss, a full disk mid-append) loses that line only: the service starts, every
readable line is replayed, the torn bytes are kept aside, and a committed decision is never failed by the spool."""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from pathlib import Path

import orjson
import pytest

from decision.decision_log import (
    Committed,
    DecisionSpool,
    RedisDecisionLog,
    SpoolFull,
    decision_from_json,
    spool_path,
    unpack,
)
from decision.pb import decision_pb2 as pb
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_store import RedisStoreConfig
from tests.helpers import a_spooled_decision, logged, service_settings

KEYS = KeyLayout()

TORN = b'{"decision": {"decision_id": "torn-'


def _spool_with_a_torn_tail(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines) + TORN)


def test_a_service_starts_on_a_torn_spool_and_replays_its_good_lines(
    stub, redis_client, loaded_redis, demo_model_dir, tmp_path: Path
) -> None:
    from decision.app import Service

    ids = [f"start-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
    data = tmp_path / "data"
    spool = spool_path(data)
    _spool_with_a_torn_tail(spool, [a_spooled_decision(stub, redis_client, i) for i in ids])

    with Service.start(service_settings(loaded_redis.url, demo_model_dir, data)):
        assert all(logged(redis_client, f"spooled-{i}") for i in ids)
    assert spool.read_bytes() == b""
    assert spool.with_name(spool.name + ".rejected").read_bytes() == TORN + b"\n"


def test_the_letters_of_a_spooled_decision_are_sent_when_it_is_replayed(
    stub, redis_client, loaded_redis, demo_model_dir, tmp_path: Path
) -> None:
    """A decision answered while Redis was down is spooled with its follow-ups (a letter the customer was told
    of); its replay puts them on the follow-ups stream as its commit would have. They were once dropped there."""
    from decision.app import Service

    # No flight: the upgrade has no pool, so the gold member's recovery and its apology letter, and no seat.
    reply = stub.Decide(pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK), timeout=5)
    assert [f.kind for f in reply.follow_ups] == ["apology_letter"]
    decision = orjson.loads(unpack(redis_client.get(KEYS.decision(reply.decision_id))))
    decision["decision_id"] = spooled = f"spooled-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    data.mkdir()
    spool_path(data).write_bytes(orjson.dumps({"decision": decision, "inputs": {}}) + b"\n")

    with Service.start(service_settings(loaded_redis.url, demo_model_dir, data)):
        assert logged(redis_client, spooled)
    letters = [orjson.loads(f["follow_up"]) for _, f in redis_client.xrange(KEYS.follow_ups_stream)]
    assert [(letter["kind"], letter["action_id"]) for letter in letters if letter["decision_id"] == spooled] == [
        (f.kind, f.action_id) for f in reply.follow_ups
    ]


def test_a_committed_decision_is_answered_whatever_the_spool_holds(stub, service, redis_client) -> None:
    """A decision that takes a seat is written before it is answered, then the spool is replayed: a torn line
    there once made the committed decision answer INTERNAL, and nothing was ever replayed."""
    spooled = f"run-{uuid.uuid4().hex[:8]}"
    spool = spool_path(service.settings.data_dir)
    line = a_spooled_decision(stub, redis_client, spooled)
    _spool_with_a_torn_tail(spool, [line])
    flight = f"AZ{uuid.uuid4().int % 9000 + 1000}"

    reply = stub.Decide(
        pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK, context={"flight": flight}),
        timeout=5,
    )
    assert reply.actions[0].action_id == "upgrade_first_class" and not reply.degraded
    service.flush_log()  # the commit starts the replay, off the request's thread
    assert logged(redis_client, f"spooled-{spooled}")
    assert spool.read_bytes() == b""
    assert TORN in spool.with_name(spool.name + ".rejected").read_bytes()


def test_a_commit_is_answered_without_waiting_for_the_spool_replay_it_starts(
    stub, redis_client, loaded_redis, tmp_path: Path, monkeypatch
) -> None:
    """A decision written before it is answered (here: a letter) starts the replay of what was spooled while
    Redis was down; that replay, as long as a full spool takes, once ran on the request's thread."""
    reply = stub.Decide(pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK), timeout=5)
    assert reply.follow_ups
    letter = decision_from_json(redis_client.get(KEYS.decision(reply.decision_id)))
    config = RedisStoreConfig(url=loaded_redis.url)
    decision_log = RedisDecisionLog(connect(config), 3600, spool_path=tmp_path / "spool.jsonl")
    assert decision_log.spool is not None
    spooled = f"spooled-{uuid.uuid4().hex[:8]}"
    decision_log.spool.append(a_spooled_decision(stub, redis_client, spooled.removeprefix("spooled-")), spooled)
    replay_may_go = threading.Event()
    store = decision_log._store
    monkeypatch.setattr(decision_log, "_store", lambda batch: (replay_may_go.wait(30), store(batch)))

    committed: list[Committed] = []
    commit = threading.Thread(
        target=lambda: committed.append(
            decision_log.commit(dataclasses.replace(letter, decision_id=uuid.uuid4().hex), [], {})
        )
    )
    commit.start()
    commit.join(timeout=10)
    answered_during_the_replay = bool(committed)
    replay_may_go.set()
    decision_log.close()
    assert answered_during_the_replay, "the commit waited for the spool's replay"
    assert logged(redis_client, spooled) and not decision_log.spool.pending


def test_an_append_after_a_torn_tail_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "decision-spool.jsonl"
    path.write_bytes(TORN)
    DecisionSpool(path).append(b'{"decision": 1}')
    assert path.read_bytes().splitlines() == [TORN, b'{"decision": 1}']


def test_unreadable_lines_anywhere_are_kept_aside_and_the_readable_ones_stored(tmp_path: Path, stub, redis_client):
    path = tmp_path / "decision-spool.jsonl"
    good = a_spooled_decision(stub, redis_client, f"mid-{uuid.uuid4().hex[:8]}")
    path.write_bytes(b"not json\n" + good + b'\n{"decision": {}}\n' + good + b"\n")
    stored: list[str] = []
    assert DecisionSpool(path).replay(lambda batch: stored.extend(d.decision_id for d, _ in batch)) == 2
    assert len(stored) == 2
    assert (tmp_path / "decision-spool.jsonl.rejected").read_bytes() == b'not json\n{"decision": {}}\n'


def test_a_replay_that_fails_keeps_every_line(tmp_path: Path, stub, redis_client) -> None:
    path = tmp_path / "decision-spool.jsonl"
    content = a_spooled_decision(stub, redis_client, f"keep-{uuid.uuid4().hex[:8]}") + b"\n"
    path.write_bytes(content)

    def redis_gone(batch) -> None:
        raise ConnectionError("Redis went away again")

    with pytest.raises(ConnectionError):
        DecisionSpool(path).replay(redis_gone)
    assert path.read_bytes() == content


def test_the_spool_is_capped_and_counts_what_it_refused(tmp_path: Path) -> None:
    spool = DecisionSpool(tmp_path / "decision-spool.jsonl", max_bytes=100)
    spool.append(b"x" * 60)
    with pytest.raises(SpoolFull, match="decision-spool.jsonl is full"):
        spool.append(b"y" * 60)
    assert spool.dropped == 1
    assert spool.path.stat().st_size == 62  # the line, with the newline before and after it


@pytest.mark.parametrize(("policy", "syncs"), [("always", 3), ("everysec", 1)])
def test_the_spool_is_fsynced_per_the_redis_policy(tmp_path: Path, monkeypatch, policy: str, syncs: int) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    spool = DecisionSpool(tmp_path / "decision-spool.jsonl", fsync=policy)
    for i in range(3):
        spool.append(b'{"n": %d}' % i)
    assert len(synced) == syncs
