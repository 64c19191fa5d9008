"""The service looks after its Redis: the embedded one is restarted when it dies (by the single process or by the
supervisor of several), dies with its owner, and the gRPC health service reports NOT_SERVING on "" while
decisions cannot be stored ("nba.v1.DecisionService" stays SERVING: it still answers, degraded)."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from decision.app import Service
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore
from tests.helpers import client_info_pid, decide, gone, parent_of, serve_workers, service_settings, stop
from training.population import generate_population

KEYS = KeyLayout()

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthWatch:
    """The statuses the health service streams for one service name, as they come."""

    def __init__(self, channel: grpc.Channel, service: str) -> None:
        self.statuses: queue.Queue[int] = queue.Queue()
        self.seen: list[int] = []
        self._stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self._stream:
                self.statuses.put(reply.status)
        except grpc.RpcError:
            pass

    def wait_for(self, status: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.statuses.get(timeout=0.2))
            except queue.Empty:
                continue
            if self.seen[-1] == status:
                return
        raise AssertionError(f"health never reported {status}; saw {self.seen}")

    def close(self) -> None:
        self._stream.cancel()
        while not self.statuses.empty():
            self.seen.append(self.statuses.get())


def not_degraded(stub: pb_grpc.DecisionServiceStub, customer: str, timeout_s: float = 20.0) -> pb.DecideReply:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = stub.Decide(pb.DecideRequest(customer_id=customer, touchpoint=pb.WEB), timeout=5)
        if not reply.degraded or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def test_a_killed_embedded_redis_is_restarted_and_health_follows_it(demo_model_dir, tmp_path):
    settings = service_settings("", demo_model_dir, tmp_path / "data", redis_fsync="always", redis_retry_after_ms=200)
    with Service.start(settings) as service, grpc.insecure_channel(service.grpc.target) as channel:
        store = service.flow.store
        assert isinstance(store, RedisOnlineStore) and service.embedded_redis is not None
        store.write_profiles(generate_population(20, now=time.time()), written_at=time.time())
        stub = pb_grpc.DecisionServiceStub(channel)
        before = not_degraded(stub, "demo-italian")
        assert not before.degraded, before.degraded_reason
        service.flush_log()
        receipt = stub.RecordOutcome(
            pb.RecordOutcomeRequest(
                decision_id=before.decision_id, action_id=before.actions[0].action_id, outcome=pb.ACCEPTED
            ),
            timeout=5,
        )
        overall, decisions = HealthWatch(channel, ""), HealthWatch(channel, "nba.v1.DecisionService")
        overall.wait_for(SERVING)
        redis_pid = int(client_info_pid(service.redis_url))

        os.kill(redis_pid, signal.SIGKILL)
        overall.wait_for(NOT_SERVING)
        overall.wait_for(SERVING)
        assert int(client_info_pid(service.redis_url)) != redis_pid  # a new redis-server, on the same port
        after = not_degraded(stub, "demo-italian")
        assert not after.degraded, after.degraded_reason
        client = redis.Redis.from_url(service.redis_url, decode_responses=True)
        outcomes = [f for _, f in client.xrange(KEYS.outcomes_stream)]
        assert [o["decision_id"] for o in outcomes] == [before.decision_id]  # acknowledged before the kill
        assert receipt.outcome_id
        client.close()
        overall.close()
        decisions.close()
        assert NOT_SERVING not in decisions.seen  # it answered all along, degraded while Redis was gone
    assert service.embedded_redis.pid is None


def test_health_is_not_serving_while_a_configured_redis_is_down(demo_model_dir, tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    settings = service_settings(redis_server.url, demo_model_dir, tmp_path / "data", redis_timeout_ms=50)
    try:
        with Service.start(settings) as service, grpc.insecure_channel(service.grpc.target) as channel:
            overall = HealthWatch(channel, "")
            overall.wait_for(SERVING)
            redis_server.stop()
            overall.wait_for(NOT_SERVING)
            reply = pb_grpc.DecisionServiceStub(channel).Decide(
                pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=5
            )
            assert "feature_store_unavailable" in reply.degraded_codes  # still answered
            redis_server.start()
            overall.wait_for(SERVING)
            overall.close()
    finally:
        redis_server.stop()


def test_the_supervisor_restarts_the_redis_it_started_and_it_dies_with_the_supervisor(demo_model_dir, tmp_path):
    served = serve_workers(2, "", demo_model_dir, tmp_path / "data")
    try:
        supervisor = served.process.pid
        redis_pid = int(client_info_pid(served.redis_url))
        assert parent_of(redis_pid) == supervisor
        os.kill(redis_pid, signal.SIGKILL)
        served.wait_for_log(rf"redis-server on port \d+ \(pid {redis_pid}\) exited with -9")
        restarted = int(served.wait_for_log(r"redis-server restarted on port \d+ \(pid (\d+)\)").group(1))
        assert int(client_info_pid(served.redis_url)) == restarted and parent_of(restarted) == supervisor
        with grpc.insecure_channel(served.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 20
            # every server process sees its Redis again (several checks reach several processes)
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != SERVING:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        deadline = time.monotonic() + 20
        while "feature_store_unavailable" in (codes := decide(served.target).degraded_codes):
            assert time.monotonic() < deadline, codes
            time.sleep(0.1)

        os.kill(supervisor, signal.SIGKILL)  # the restarted Redis must not outlive it either
        served.process.wait(timeout=10)
        assert gone(restarted), "the supervisor's redis-server outlived it"
        assert all(gone(pid) for pid in served.pids)
    finally:
        stop(served)
