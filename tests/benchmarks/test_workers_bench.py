"""The throughput benchmark measures what it says: whole decisions from the server processes asked for."""

from __future__ import annotations

from benchmarks.workers_bench import measure_throughput, table
from tests.helpers import TEST_POPULATION


def test_throughput_is_measured_for_two_server_processes(loaded_redis, demo_model_dir):
    result = measure_throughput(
        2,
        loaded_redis.url,
        demo_model_dir,
        seconds=1.0,
        warmup_s=0.5,
        in_flight=2,
        client_processes=2,
        customers=TEST_POPULATION,
    )
    assert result.processes == 2 and result.client_processes == 2
    assert result.decisions > 0 and result.errors == 0
    assert result.decisions_per_s == result.decisions / 1.0
    assert "| 2 |" in table([result])
