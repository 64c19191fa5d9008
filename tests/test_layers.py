"""The import-linter contracts of ``make lint`` hold, and break on an upward import (in a copy of the tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("benchmarks", "training", "decision", "rules", "features")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "Layers: benchmarks > training > decision"


def lint_imports_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the packages with ``line`` added to ``module`` (a path under the root)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    if line:
        with (tmp_path / module).open("a", encoding="utf-8") as file:
            file.write(f"\n{line}\n")
    # The copy is analysed, not the installed tree: lint-imports puts its working directory first on sys.path.
    # Wide lines, so that a contract's name is not wrapped.
    env = {**os.environ, "COLUMNS": "200"}
    command = [str(LINT_IMPORTS), "--no-cache"]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_contracts_hold(tmp_path):
    done = lint_imports_with(tmp_path, "", "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "culprit"),
    [
        (
            "decision/flow.py",
            "import training",
            "Layers: benchmarks > training > decision",
            "decision.flow -> training",
        ),
        ("features/schema.py", "import rules.compiler", LAYERS, "features.schema"),
        (
            "decision/eligibility.py",
            "from decision.api import grpc_server",
            "The stages of decision never import the front ends",
            "decision.eligibility -> decision.api.grpc_server",
        ),
        ("decision/scoring.py", "import decision.app", "The stages of decision never import", "decision.scoring"),
        ("decision/api/http_api.py", "import decision.app", "Inside decision: cli > workers > app > api", "http_api"),
        ("decision/models/card.py", "import decision.scoring", "The model files (decision.models)", "card"),
    ],
)
def test_an_upward_import_breaks_the_contract_it_crosses(tmp_path, module, line, contract, culprit):
    done = lint_imports_with(tmp_path, module, line)
    assert done.returncode != 0, done.stdout
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and culprit in broken, done.stdout
