"""The long commands show progress on stderr when it is a terminal, and nowhere else: a run whose stderr is a
pseudo-terminal draws the bar there, and prints the same results on stdout as a run with both piped."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

import pytest
import redis

from features.redis_keys import KeyLayout
from features.redis_server import RedisServer


def nba(argv: list[str], env: dict[str, str], stderr_on_a_terminal: bool) -> tuple[int, str, str]:
    """Run ``nba``: its exit code, stdout and stderr (read from a pseudo-terminal when ``stderr_on_a_terminal``)."""
    command = [sys.executable, "-m", "decision.cli", *argv]
    if not stderr_on_a_terminal:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        return done.returncode, done.stdout, done.stderr
    terminal, stderr_end = pty.openpty()
    fcntl.ioctl(stderr_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal of 120 columns
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr_end, text=True)
    os.close(stderr_end)
    drawn = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: the command closed its end
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    out, _ = process.communicate(timeout=240)
    reader.join(timeout=10)
    os.close(terminal)
    return process.returncode, out, drawn.decode(errors="replace")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NBA_")}
    return clean | {"NBA_DATA_DIR": str(tmp_path_factory.mktemp("data"))}


def test_simulate_draws_progress_on_a_terminal_and_prints_the_same_results(env, demo_model_dir, tmp_path):
    population = tmp_path / "population.csv"
    assert nba(["demo-population", "--out", str(population), "--customers", "1500"], env, False)[0] == 0
    argv = ["simulate", "--population", str(population), "--live-model", str(demo_model_dir), "--now", "1.8e9"]
    piped_code, piped_out, piped_err = nba(argv, env, stderr_on_a_terminal=False)
    code, out, err = nba(argv, env, stderr_on_a_terminal=True)
    assert piped_code == code == 0, (piped_err, err)
    assert out == piped_out
    assert "simulate: 100%" in err and "1503/1503" in err and "customer/s" in err, err[-1000:]
    assert "simulate:" not in piped_err and "\r" not in piped_err, "a bar where nobody watches"
    assert "\r" not in out


def test_train_draws_a_tree_count_on_a_terminal(env, tmp_path):
    log = tmp_path / "log.parquet"
    assert nba(["demo-log", "--out", str(log), "--customers", "2000"], env, False)[0] == 0
    argv = ["train", "--log", str(log), "--action-column", "action", "--outcome-column", "accepted",
            "--propensity-column", "propensity", "--registry", str(tmp_path / "registry")]  # fmt: skip
    code, out, err = nba(argv, env, stderr_on_a_terminal=True)
    assert code == 0, err
    assert "training:" in err and "tree" in err, err[-1000:]
    lines = out.splitlines()
    assert lines[0].startswith("binary model on ") and lines[-2].startswith("model directory: "), out
    assert "\r" not in out and "training:" not in out


def test_load_draws_the_profiles_loaded_on_a_terminal(env, tmp_path):
    population = tmp_path / "population.csv"
    assert nba(["demo-population", "--out", str(population), "--customers", "600"], env, False)[0] == 0
    with RedisServer(tmp_path / "redis") as redis_server:
        argv = ["load", str(population), "--redis-url", redis_server.url]
        code, out, err = nba(argv, env, stderr_on_a_terminal=True)
        assert code == 0, err
        assert "load: 100%" in err and "603/603" in err and "profile/s" in err, err[-1000:]
        assert out == f"loaded 603 profiles from {population}\n"
        assert redis.Redis.from_url(redis_server.url).exists(KeyLayout().customer("demo-italian"))
