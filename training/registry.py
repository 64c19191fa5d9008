"""The model registry: one directory per trained version, and an index of them.

    registry/
      index.json                     every version, oldest first: id, when, servable, log fingerprint, metrics
      20251122-142700-3fa2b1c4/      a version: the files the service reads
        model.txt                    LightGBM's text model
        model.json                   the model card (decision/scoring.py's ModelCard reads it)

A version directory is complete or absent: it is written under a temporary name and renamed into place, so
``nba publish VERSION`` (later) can point the service's model directory at ``registry/VERSION`` and never see
half a model. A version is never rewritten; the index can be rebuilt from the directories at any time.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MODEL_FILE = "model.txt"
CARD_FILE = "model.json"
INDEX_FILE = "index.json"
LATEST = "latest"


class RegistryError(LookupError):
    """No such model version, or no model in a directory."""


class VersionExists(RegistryError):
    """A version of that id is already stored (versions are never rewritten)."""


class Registry:
    """Model versions under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def add(self, version: str, files: Mapping[str, str]) -> Path:
        """Store a new version's files (``model.txt``, ``model.json``, ...); returns its directory."""
        if not version or "/" in version or version.startswith(".") or version == LATEST:
            raise RegistryError(f"invalid version id {version!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / version
        staging = self.root / f".staging-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        with self._locked():
            if target.exists():
                shutil.rmtree(staging, ignore_errors=True)
                raise VersionExists(f"version {version} is already in {self.root}")
            os.rename(staging, target)  # atomic: readers see no version or the whole version
        self._update_index()
        return target

    def versions(self) -> list[dict[str, Any]]:
        """Index entries, oldest first."""
        path = self.root / INDEX_FILE
        if not path.exists():
            return []
        return list(json.loads(path.read_text(encoding="utf-8"))["versions"])

    def resolve(self, ref: str | Path) -> Path:
        """The model directory for a version id, ``latest``, or a directory holding model.txt and model.json."""
        path = Path(ref)
        if (path / CARD_FILE).exists() and (path / MODEL_FILE).exists():
            return path
        name = str(ref)
        if name == LATEST:
            versions = self.versions()
            if not versions:
                raise RegistryError(f"no model in the registry {self.root}: train one first (nba train)")
            name = versions[-1]["version"]
        candidate = self.root / name
        if "/" not in name and (candidate / CARD_FILE).exists():
            return candidate
        known = [v["version"] for v in self.versions()][-5:]
        raise RegistryError(
            f"{ref!r} is neither a model directory (with {MODEL_FILE} and {CARD_FILE}) nor a version in "
            f"{self.root}; latest versions: {', '.join(known) or 'none'}"
        )

    def rebuild_index(self) -> list[dict[str, Any]]:
        """Rewrite index.json from the version directories."""
        self._update_index()
        return self.versions()

    def _update_index(self) -> None:
        with self._locked():
            entries = []
            for card_path in self.root.glob(f"*/{CARD_FILE}"):
                if card_path.parent.name.startswith("."):
                    continue
                entries.append(index_entry(json.loads(card_path.read_text(encoding="utf-8"))))
            entries.sort(key=lambda e: (e["trained_at"], e["version"]))
            document = {"updated_at": _now(), "versions": entries}
            temporary = self.root / f".{INDEX_FILE}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.root / INDEX_FILE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two trainings finishing together must not lose each other's index entry.
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def index_entry(card: Mapping[str, Any]) -> dict[str, Any]:
    """What the index keeps of a model card."""
    log = card.get("log", {})
    return {
        "version": card["version"],
        "trained_at": card.get("trained_at", ""),
        "servable": bool(card.get("servable", False)),
        "objective": card.get("objective", ""),
        "rows": log.get("rows"),
        "log_fingerprint": log.get("fingerprint"),
        "metrics": {k: v for k, v in card.get("metrics", {}).items() if isinstance(v, int | float)},
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
