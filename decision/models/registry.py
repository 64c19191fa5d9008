"""The model registry: one directory per trained version, and an index of them.

    registry/
      index.json                     every version, oldest first: id, when, servable, log fingerprint, metrics
      live.json                      what serves: a stack of deployments (newest last) and the audit trail
      20251122-142700-3fa2b1c4/      a version: the files the service reads
        model.txt                    LightGBM's text model
        model.json                   the model card (decision/models/card.py)

A version directory is complete or absent: it is written under a temporary name and renamed into place, so a
server following ``live.json`` never sees half a model. A version is never rewritten; the index can be rebuilt
from the directories at any time.

``nba publish VERSION`` pushes a deployment (a champion, and optionally a challenger deciding a share of the
customers or scoring in its shadow) on the stack; ``nba rollback`` pops it, so the one before serves again. Every
running server polls ``live.json`` and swaps models between decisions (``decision/deployment.py``). Both are
recorded in the audit trail with when, who and why.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from decision.models.card import CARD_FILE, MODEL_FILE, ModelCard

INDEX_FILE = "index.json"
LIVE_FILE = "live.json"
LATEST = "latest"


class RegistryError(LookupError):
    """No such model version, or no model in a directory."""


class VersionExists(RegistryError):
    """A version of that id is already stored (versions are never rewritten)."""


@dataclass(frozen=True)
class Deployment:
    """What serves: the champion decides; a challenger, when there is one, decides ``share`` of the customers
    (``mode="split"``, by a stable hash of the customer id) or scores every request beside it without ever
    deciding (``mode="shadow"``)."""

    champion: str
    challenger: str | None = None
    share: float = 0.0
    mode: Literal["split", "shadow"] = "split"
    published_at: str = ""
    by: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("split", "shadow"):
            raise RegistryError(f"mode: must be split or shadow; got {self.mode!r}")
        if self.challenger is None and self.share:
            raise RegistryError("share: only with a challenger (--challenger VERSION)")
        if self.challenger is not None and self.mode == "split" and not 0.0 < self.share < 1.0:
            raise RegistryError(f"share: a challenger's share of customers must be in (0, 1); got {self.share}")
        if self.challenger is not None and self.challenger == self.champion:
            raise RegistryError(f"challenger: must differ from the champion {self.champion!r}")

    def describe(self) -> str:
        if self.challenger is None:
            return self.champion
        if self.mode == "shadow":
            return f"{self.champion} (challenger {self.challenger} in shadow)"
        return f"{self.champion} (challenger {self.challenger} deciding {self.share:.0%} of customers)"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


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

    # -- deployments -------------------------------------------------------------------------------------------

    def live(self) -> Deployment | None:
        """The deployment serving now; None when nothing was ever published (servers use NBA_MODEL_DIR)."""
        stack = self._live_document()["deployments"]
        return Deployment.from_json(stack[-1]) if stack else None

    def deployments(self) -> list[Deployment]:
        """Every deployment still on the stack, oldest first (rollback goes back through them)."""
        return [Deployment.from_json(d) for d in self._live_document()["deployments"]]

    def audit(self) -> list[dict[str, Any]]:
        """Every publish and rollback, oldest first: when, who, what and why."""
        return list(self._live_document()["audit"])

    def publish(
        self,
        version: str,
        *,
        challenger: str | None = None,
        share: float = 0.0,
        shadow: bool = False,
        note: str = "",
        by: str | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> Deployment:
        """Make ``version`` the champion (with an optional challenger); ``check`` refuses a model that cannot serve.

        The check runs on every model named before anything changes, so a refused publish leaves the live
        deployment as it was.
        """
        # The arguments first (a share out of range is a typo to name before any model is looked at) ...
        Deployment(version, challenger, share if not shadow else 0.0, "shadow" if shadow else "split")
        # ... then the versions they name.
        deployment = Deployment(
            champion=self._servable_version(version),
            challenger=self._servable_version(challenger) if challenger is not None else None,
            share=share if not shadow else 0.0,
            mode="shadow" if shadow else "split",
            published_at=_now(),
            by=by or _user(),
            note=note,
        )
        if check is not None:
            for name in filter(None, (deployment.champion, deployment.challenger)):
                check(self.root / name)
        with self._locked():
            document = self._live_document()
            document["deployments"].append(asdict(deployment))
            document["audit"].append({"event": "publish", **asdict(deployment)})
            self._write_live(document)
        return deployment

    def rollback(
        self, *, note: str = "", by: str | None = None, check: Callable[[Path], None] | None = None
    ) -> Deployment:
        """Go back one deployment; returns the one serving again. Refused when there is nothing to go back to, or
        when ``check`` refuses a model of the deployment it would restore (live.json is then left as it was)."""
        with self._locked():
            document = self._live_document()
            stack = document["deployments"]
            if len(stack) < 2:
                what = "nothing was published" if not stack else f"only {stack[-1]['champion']} was ever published"
                raise RegistryError(f"nothing to roll back to: {what} in {self.root}")
            restored = Deployment.from_json(stack[-2])
            if check is not None:
                for name in filter(None, (restored.champion, restored.challenger)):
                    check(self.resolve(name))
            retired = stack.pop()
            document["audit"].append(
                {"event": "rollback", "at": _now(), "by": by or _user(), "note": note, "retired": retired,
                 "restored": asdict(restored)}
            )  # fmt: skip
            self._write_live(document)
        return restored

    def _servable_version(self, version: str) -> str:
        directory = self.resolve(version)
        if directory.parent.resolve() != self.root.resolve():
            raise RegistryError(f"{version!r}: only a version of the registry {self.root} can be published")
        if not ModelCard.read(directory).servable:
            raise RegistryError(
                f"{directory.name} cannot serve: it was trained on columns other than the feature schema's "
                "(an offline model, for nba score and nba evaluate only)"
            )
        return directory.name

    def _live_document(self) -> dict[str, Any]:
        path = self.root / LIVE_FILE
        if not path.exists():
            return {"deployments": [], "audit": []}
        document = json.loads(path.read_text(encoding="utf-8"))
        return {"deployments": list(document.get("deployments", [])), "audit": list(document.get("audit", []))}

    def _write_live(self, document: Mapping[str, Any]) -> None:
        # Servers poll this file: replaced whole, so a reader sees the old document or the new one.
        temporary = self.root / f".{LIVE_FILE}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps({"updated_at": _now(), **document}, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.root / LIVE_FILE)

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
                entries.append(index_entry(ModelCard.read(card_path.parent)))
            entries.sort(key=lambda e: (e["trained_at"], e["version"]))
            document = {"updated_at": _now(), "versions": entries}
            temporary = self.root / f".{INDEX_FILE}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.root / INDEX_FILE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two trainings finishing together must not lose each other's index entry.
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def index_entry(card: ModelCard) -> dict[str, Any]:
    """What the index keeps of a model card."""
    return {
        "version": card.version,
        "trained_at": card.trained_at,
        "servable": card.servable,
        "objective": card.details.get("objective", ""),
        "rows": card.log.get("rows"),
        "log_fingerprint": card.log.get("fingerprint"),
        "metrics": {k: v for k, v in card.metrics.items() if isinstance(v, int | float)},
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return f"uid {os.getuid()}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
