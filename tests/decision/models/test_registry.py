"""The model registry: whole versions or none, an index, and names that resolve to a model directory."""

from __future__ import annotations

import json

import pytest

from decision.models import Registry, RegistryError, VersionExists


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


def test_publish_pushes_deployments_rollback_pops_them_and_the_audit_trail_keeps_both(tmp_path):
    registry = Registry(tmp_path)
    for version in ("v1", "v2", "v3"):
        registry.add(version, {"model.txt": "tree", "model.json": card(version, version, servable=True)})
    assert registry.live() is None
    checked: list[str] = []
    registry.publish("v1", note="first", by="ana", check=lambda d: checked.append(d.name))
    registry.publish("v2", challenger="v3", share=0.25, by="ana", check=lambda d: checked.append(d.name))
    assert checked == ["v1", "v2", "v3"]  # every model named is checked before anything changes
    live = registry.live()
    assert live is not None and (live.champion, live.challenger, live.share, live.mode) == ("v2", "v3", 0.25, "split")
    registry.publish("latest", challenger="v1", shadow=True)
    assert (registry.live().champion, registry.live().mode) == ("v3", "shadow")  # type: ignore[union-attr]

    restored = registry.rollback(note="v3 worse", by="bo")
    assert (restored.champion, restored.challenger) == ("v2", "v3")
    assert registry.rollback().champion == "v1"
    with pytest.raises(RegistryError, match="nothing to roll back to: only v1 was ever published"):
        registry.rollback()
    events = [(e["event"], e.get("champion") or e["restored"]["champion"]) for e in registry.audit()]
    assert events == [("publish", "v1"), ("publish", "v2"), ("publish", "v3"), ("rollback", "v2"), ("rollback", "v1")]
    assert registry.audit()[3]["by"] == "bo" and registry.audit()[3]["note"] == "v3 worse"


def test_a_refused_publish_changes_nothing(tmp_path):
    registry = Registry(tmp_path)
    registry.add("good", {"model.txt": "tree", "model.json": card("good", "1", servable=True)})
    registry.add("offline", {"model.txt": "tree", "model.json": card("offline", "2", servable=False)})
    registry.publish("good")

    def refuse(directory):
        raise RegistryError(f"{directory.name} is broken")

    with pytest.raises(RegistryError, match="offline cannot serve"):
        registry.publish("offline")
    with pytest.raises(RegistryError, match="good is broken"):
        registry.publish("good", note="again", check=refuse)
    with pytest.raises(RegistryError, match="latest versions: good, offline"):
        registry.publish("missing")
    with pytest.raises(RegistryError, match=r"share: a challenger's share of customers must be in \(0, 1\); got 1.5"):
        registry.publish("good", challenger="offline", share=1.5)
    with pytest.raises(RegistryError, match="challenger: must differ from the champion"):
        registry.publish("good", challenger="good", share=0.5)
    assert [d.champion for d in registry.deployments()] == ["good"]
    assert len(registry.audit()) == 1
