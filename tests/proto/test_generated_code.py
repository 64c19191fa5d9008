"""decision/pb must be exactly what `make proto` generates from proto/nba/v1 today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    fresh = {p.name: p.read_text() for p in _generator().generate(tmp_path)}
    fresh["__init__.py"] = (tmp_path / "__init__.py").read_text()
    committed = {p.name: p.read_text() for p in (ROOT / "decision" / "pb").iterdir() if p.is_file()}
    assert set(committed) == set(fresh), "decision/pb has files `make proto` does not make (or lacks some)"
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"decision/pb is stale ({', '.join(stale)}): run `make proto` and commit the result"
