"""The ``nba`` command line: serving's own commands and those of the packages above it, found by entry point."""

from __future__ import annotations

import pytest

from decision.cli import main

SERVING = ["serve", "decide", "outcome", "describe", "call", "load", "incident", "ship-log"]
ABOVE_SERVING = ["demo", "train-demo", "rules", "demo-log", "export-log", "train", "evaluate", "score", "models"]
ABOVE_SERVING += ["publish", "rollback", "demo-population", "simulate"]


def test_every_command_is_offered_though_serving_imports_none_of_training(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out.split("{", 1)[1].split("}", 1)[0].split(",")
    # A missing one means the nba.commands entry points are not installed: make setup reinstalls the package.
    assert sorted(listed) == sorted(SERVING + ABOVE_SERVING)
