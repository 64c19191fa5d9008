"""The README's demo section, walked twice against one ``nba demo``: the same answers both times.

The demo prints its examples ("Try:"); the README shows the same commands. Each example carries its request id, so
a second pass gets the decisions of the first back (and says so) instead of new ones the contact policy would
count against the visit, with seats already taken."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from decision.models import Registry
from tests.helpers import running_demo as demo_printing

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_demo(env: dict[str, str], *args: str) -> Iterator[list[list[str]]]:
    """``nba demo`` with 200 customers; the example commands it printed."""
    with demo_printing(env, "--customers", "200", *args) as printed:
        commands = [shlex.split(line.strip())[1:] for line in printed if line.startswith("  .venv/bin/nba ")]
        assert commands, "the demo printed no examples"
        yield commands


@pytest.fixture()
def demo_env(demo_model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of the demo and of the commands: its own data directory, and no NBA_PORT nor NBA_REDIS_URL
    (the commands find the demo as a user's do)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBA_")}
    env |= {"NBA_DATA_DIR": str(tmp_path / "data"), "NBA_MODEL_DIR": str(demo_model_dir)}
    return env | {"NBA_RULES_RELOAD_S": "0"}


@pytest.fixture()
def demo(demo_env: dict[str, str]) -> Iterator[tuple[list[list[str]], dict[str, str]]]:
    with running_demo(demo_env) as commands:
        yield commands, demo_env


def run(env: dict[str, str], argv: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "decision.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout.splitlines()


def test_the_demo_examples_give_the_same_answers_twice_and_say_what_they_changed(demo):
    commands, env = demo
    decides = [c for c in commands if c[0] == "decide"]
    assert len(decides) >= 4 and ["describe", "nba.v1.DecisionService"] in commands
    first = {tuple(c): run(env, c) for c in commands}
    second = {tuple(c): run(env, c) for c in commands}
    for command in decides:
        before, again = first[tuple(command)], second[tuple(command)]
        assert before[:-1] == again[:-1], f"{shlex.join(command)}: another answer the second time"
        assert before[-1].startswith("this call: ") and "counted in" in before[-1]
        assert again[-1].startswith("answered before (request id "), again[-1]
    assert first[("describe", "nba.v1.DecisionService")] == second[("describe", "nba.v1.DecisionService")]
    # The kiosk's upgrade for the passenger is the agent desk's too: one seat per passenger and flight.
    kiosk, agent = (first[tuple(c)] for c in decides[:2])
    assert kiosk[1].split("  ")[0] == agent[1].split("  ")[0], (kiosk, agent)


def test_the_readmes_demo_section_shows_the_commands_the_demo_prints(demo):
    commands, _ = demo
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = [shlex.split(m)[1:] for m in re.findall(r"^\$ (\.venv/bin/nba (?:decide|describe) .+)$", readme, re.M)]
    for command in commands:
        assert command in shown, f"the README does not show {shlex.join(command)}"


def test_the_demo_model_is_a_registry_version_that_rollback_returns_to(demo, demo_model_dir):
    _, env = demo
    listed = json.loads("\n".join(run(env, ["models", "--json"])))
    demo_version = listed["live"]
    assert demo_version.startswith("demo-") and [v["version"] for v in listed["versions"]] == [demo_version]
    # A model of one's own (here the demo model's files under another version id), published, then rolled back.
    registry = Path(env["NBA_DATA_DIR"]) / "registry"
    card = json.loads((demo_model_dir / "model.json").read_text()) | {"version": "mine-1"}
    Registry(registry).add("mine-1", {"model.txt": (demo_model_dir / "model.txt").read_text(),
                                      "model.json": json.dumps(card)})  # fmt: skip
    assert run(env, ["publish", "mine-1", "--note", "my own"])[-1].startswith("live: mine-1")
    assert run(env, ["rollback", "--note", "back to the demo"]) == [f"live again: {demo_version}"]


def test_demo_reset_forgets_the_visits_and_makes_the_demo_model_live_again(demo_env, demo_model_dir):
    kiosk = ["decide", "--customer", "demo-ife-gold", "--touchpoint", "CHECKIN_KIOSK", "--context", "flight=AZ610",
             "cabin=economy", "--request-id", "s1-kiosk"]  # fmt: skip
    with running_demo(demo_env):
        first = run(demo_env, kiosk)
        registry = Path(demo_env["NBA_DATA_DIR"]) / "registry"
        card = json.loads((demo_model_dir / "model.json").read_text()) | {"version": "mine-2"}
        Registry(registry).add("mine-2", {"model.txt": (demo_model_dir / "model.txt").read_text(),
                                          "model.json": json.dumps(card)})  # fmt: skip
        run(demo_env, ["publish", "mine-2"])
    with running_demo(demo_env):  # a restart keeps the state: the same request id is a retry
        assert run(demo_env, kiosk)[-1].startswith("answered before")
    with running_demo(demo_env, "--reset"):
        again = run(demo_env, kiosk)
        assert again[-1].startswith("this call: 3 offers counted"), again[-1]
        assert again[:-1] == first[:-1], "a fresh visit: the same decision as the first time"
        assert Registry(registry).live().champion.startswith("demo-")


def test_the_demo_sets_up_over_a_redis_slower_than_a_decision_may_wait(demo_env):
    """Loading the profiles and the reset wait for Redis as a batch job does: with the serving client, a pipeline
    on a busy machine outlasted the milliseconds a decision gives Redis and ``make demo`` ended in a traceback.
    Here Redis may take 1 ms for a decision: decisions degrade, the set-up does not."""
    with running_demo(demo_env | {"NBA_REDIS_TIMEOUT_MS": "1"}, "--reset") as commands:
        assert [c[0] for c in commands].count("decide") >= 4
