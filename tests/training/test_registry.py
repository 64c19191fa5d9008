"""The model registry: whole versions or none, an index, and names that resolve to a model directory."""

from __future__ import annotations

import json

import pytest

from training.registry import Registry, RegistryError, VersionExists


def card(version: str, trained_at: str, **extra: object) -> str:
    return json.dumps({"version": version, "trained_at": trained_at, "metrics": {"auc_holdout": 0.8}, **extra})


def test_versions_are_indexed_oldest_first_and_resolve_by_id_latest_or_directory(tmp_path):
    registry = Registry(tmp_path / "registry")
    older = registry.add("20250101-000000-aaaa", {"model.txt": "tree", "model.json": card("20250101-000000-aaaa", "1")})
    registry.add("20250102-000000-bbbb", {"model.txt": "tree", "model.json": card("20250102-000000-bbbb", "2")})
    assert [v["version"] for v in registry.versions()] == ["20250101-000000-aaaa", "20250102-000000-bbbb"]
    assert registry.versions()[0]["metrics"] == {"auc_holdout": 0.8}
    assert registry.resolve("latest").name == "20250102-000000-bbbb"
    assert registry.resolve("20250101-000000-aaaa") == older
    assert registry.resolve(older) == older  # a directory anywhere is a model too
    # Nothing is left half-written beside the versions.
    assert sorted(p.name for p in registry.root.iterdir() if not p.name.startswith(".lock")) == [
        "20250101-000000-aaaa",
        "20250102-000000-bbbb",
        "index.json",
    ]


def test_a_version_is_never_overwritten(tmp_path):
    registry = Registry(tmp_path)
    registry.add("v1", {"model.txt": "tree", "model.json": card("v1", "1")})
    with pytest.raises(VersionExists, match="already"):
        registry.add("v1", {"model.txt": "other", "model.json": card("v1", "2")})
    assert (tmp_path / "v1" / "model.txt").read_text() == "tree"


def test_unknown_names_are_refused_listing_the_latest_versions(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no model in the registry"):
        registry.resolve("latest")
    registry.add("v1", {"model.txt": "tree", "model.json": card("v1", "1")})
    with pytest.raises(RegistryError, match="latest versions: v1"):
        registry.resolve("v2")
    with pytest.raises(RegistryError, match="invalid version"):
        registry.add("../escape", {"model.txt": "tree"})


def test_the_index_is_rebuilt_from_the_version_directories(tmp_path):
    registry = Registry(tmp_path)
    registry.add("v1", {"model.txt": "tree", "model.json": card("v1", "1", servable=True)})
    (tmp_path / "index.json").unlink()
    assert [(v["version"], v["servable"]) for v in registry.rebuild_index()] == [("v1", True)]
