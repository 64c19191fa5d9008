"""Rules change while the service runs: a good change goes live without a restart or a failed call, a bad one
is refused and the last good rules keep serving."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from decision.catalogue import DEFAULT_CATALOGUE_PATH
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_server import RedisServer
from rules.engine import DEFAULT_POLICY_DIR
from tests.helpers import service_settings

MESSAGES = DEFAULT_POLICY_DIR.parent / "messages.yaml"
# A new rule: lounge passes for frequent flyers, said with a reason that exists in every language.
NEW_RULE = """rules:
  - id: lounge_for_frequent_flyers
    description: Frequent flyers are more likely to be offered the lounge.
    when:
      all:
        - {field: flights_12m, gte: 0}
    then:
      - {boost: lounge_pass, by: 1.2, reason: loyal_member}
"""


@pytest.fixture()
def rules_copy(tmp_path: Path) -> Path:
    """The shipped rule files, catalogue and messages, copied where the test may change them."""
    shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    shutil.copy(DEFAULT_CATALOGUE_PATH, tmp_path / "actions.yaml")
    shutil.copy(MESSAGES, tmp_path / "messages.yaml")
    return tmp_path


def reloading_settings(redis_url: str, model_dir: Path, rules_copy: Path, **overrides: object):
    """A test service's settings over the copied rule files, polled every 50 ms."""
    return service_settings(
        redis_url,
        model_dir,
        rules_copy / "data",
        policy_dir=rules_copy / "policies",
        catalogue_path=rules_copy / "actions.yaml",
        messages_path=rules_copy / "messages.yaml",
        **{"rules_reload_s": 0.05, **overrides},
    )


@pytest.fixture()
def reloading_service(loaded_redis: RedisServer, demo_model_dir: Path, rules_copy: Path) -> Iterator:
    from decision.app import Service

    settings = reloading_settings(loaded_redis.url, demo_model_dir, rules_copy)
    with Service.start(settings) as running, grpc.insecure_channel(running.grpc.target) as channel:
        yield running, pb_grpc.DecisionServiceStub(channel)


def _request(i: int) -> pb.DecideRequest:
    return pb.DecideRequest(
        customer_id="demo-ife-gold" if i % 2 else f"c{i % 500:05d}",
        touchpoint=pb.CHECKIN_AGENT,
        context={"flight": "AZ700"},
    )


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the running service did not pick up the change"
        time.sleep(0.02)


def test_a_changed_rule_file_goes_live_under_load_without_a_failed_call(reloading_service, rules_copy: Path) -> None:
    service, stub = reloading_service
    before = service.flow.rules_version
    stop = threading.Event()
    failures: list[str] = []
    seen: Counter[tuple[str, bool]] = Counter()

    def load() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                reply = stub.Decide(_request(i), timeout=5)
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
                continue
            new_rule_fired = any(r.rule_id == "lounge_for_frequent_flyers" for r in reply.explanation.rules_fired)
            seen[(reply.rules_version, new_rule_fired)] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        (rules_copy / "policies" / "frequent_flyers.yaml").write_text(NEW_RULE)
        _wait_for(lambda: service.flow.rules_version != before)
        after = service.flow.rules_version
        time.sleep(0.3)
        (rules_copy / "policies" / "frequent_flyers.yaml").unlink()
        _wait_for(lambda: service.flow.rules_version == before)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    # Every answer is wholly one version: the new rule fires under the new version only, always there.
    assert set(seen) == {(before, False), (after, True)}
    assert seen[(after, True)] > 10 and seen[(before, False)] > 10


def test_a_bad_rule_file_is_refused_and_the_old_rules_keep_serving(reloading_service, rules_copy: Path) -> None:
    service, stub = reloading_service
    before = service.flow.rules_version
    watcher = service.rules_watcher
    bad = NEW_RULE.replace("flights_12m", "flights_12_months")
    (rules_copy / "policies" / "frequent_flyers.yaml").write_text(bad)
    _wait_for(lambda: watcher.last_error is not None)
    assert watcher.last_error.startswith(
        "frequent_flyers.yaml: rule 'lounge_for_frequent_flyers': field 'flights_12_months': unknown field; "
        "did you mean flights_12m"
    )
    reply = stub.Decide(_request(1), timeout=5)
    assert reply.rules_version == before == service.flow.rules_version
    # Fixed: the next poll takes it.
    (rules_copy / "policies" / "frequent_flyers.yaml").write_text(NEW_RULE)
    _wait_for(lambda: service.flow.rules_version != before)
    assert watcher.last_error is None
    fired = stub.Decide(_request(1), timeout=5).explanation.rules_fired
    assert any(r.rule_id == "lounge_for_frequent_flyers" for r in fired)


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        ("messages.yaml", lambda text: text.replace("reasons:", "reasonz:", 1), "needs a 'languages' list"),
        ("actions.yaml", lambda text: text.replace("value: 400", "value: lots", 1), "value must be a number"),
        (
            "messages.yaml",
            lambda text: text.replace("  loyal_member:", "  loyal_member_gone:", 1),
            "reason 'loyal_member' has no text",
        ),
    ],
)
def test_a_bad_catalogue_or_messages_file_is_refused_too(
    reloading_service, rules_copy: Path, file: str, change, expected: str
) -> None:
    service, stub = reloading_service
    before = service.flow.rules_version
    path = rules_copy / file
    path.write_text(change(path.read_text("utf-8")), "utf-8")
    _wait_for(lambda: service.rules_watcher.last_error is not None)
    assert expected in service.rules_watcher.last_error
    assert stub.Decide(_request(1), timeout=5).rules_version == before


def test_a_rule_file_written_in_two_halves_goes_live_only_whole(
    loaded_redis: RedisServer, demo_model_dir: Path, rules_copy: Path
) -> None:
    """A copy that stalls half-way (a slow network share, a full disk freed a moment later) never serves the half:
    the half compiles (the complaint rules are simply missing), so only the settle time keeps it out."""
    from decision.app import Service

    settings = reloading_settings(loaded_redis.url, demo_model_dir, rules_copy, rules_settle_s=2.0)
    path = rules_copy / "policies" / "service_recovery.yaml"
    whole = path.read_text("utf-8").replace("Service recovery", "Service recovery (v2)", 1)
    with Service.start(settings) as service:
        before = service.flow.rules_version
        seen = {before}
        with path.open("w", encoding="utf-8") as file:
            file.write(whole[: whole.index("  - id: complaint_recovery\n")])
            file.flush()
            for _ in range(10):  # the writer stalls for 0.5 s with half the file on disk
                seen.add(service.flow.rules_version)
                time.sleep(0.05)
            file.write(whole[whole.index("  - id: complaint_recovery\n") :])
        _wait_for(lambda: service.flow.rules_version != before)
        assert seen == {before}
        assert service.rules_watcher.reloads == 1
        assert {"complaint_recovery", "complaint_recovery_valuable"} <= set(service.flow.strategy.rules.rule_ids)
