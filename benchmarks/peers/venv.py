"""Each peer in a virtual environment of its own, with pinned versions, installed once.

A peer's dependencies (Feast's pandas and FastAPI, MLServer's own gRPC stack) would clash with the project's,
so every peer gets ``<root>/<name>/venv``. A stamp file holds the requirement lines it was installed with and
how long that took: ``install()`` skips the work while the stamp matches and installs again (in place, so only
what changed is downloaded) when the pins change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(".nba-data/peers")
"""Where peers live, relative to the project (ignored by git with the rest of .nba-data)."""

PIP = "pip==26.3"
"""The pip every peer venv is upgraded to first: the one venv ships can fail to resolve today's packages."""

STAMP = ".nba-installed.json"


class InstallError(RuntimeError):
    """A peer's venv could not be created or its packages installed; the message names the command."""


@dataclass(frozen=True)
class PeerVenv:
    """A peer's virtual environment: ``requirements`` are pip requirement lines, each pinned with ``==``."""

    name: str
    requirements: tuple[str, ...]
    root: Path = DEFAULT_ROOT

    def __post_init__(self) -> None:
        unpinned = [r for r in self.requirements if "==" not in r]
        if unpinned:
            raise ValueError(f"peer {self.name}: every requirement must be pinned with ==, got {unpinned}")

    @property
    def dir(self) -> Path:
        return (self.root / self.name / "venv").absolute()  # servers run from their own directories

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def executable(self, name: str) -> Path:
        """A console script installed in this venv (``feast``, ``mlserver``)."""
        return self.bin / name

    def install_commands(self) -> list[list[str]]:
        """The command lines ``install()`` runs, in order."""
        python = str(self.python)
        return [
            [sys.executable, "-m", "venv", str(self.dir)],
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", PIP],
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *self.requirements],
        ]

    @property
    def installed(self) -> bool:
        stamp = self._read_stamp()
        return stamp is not None and stamp.get("requirements") == list(self.requirements) and self.python.exists()

    def install(self) -> float:
        """Create the venv and install the pinned packages unless already done; seconds spent (0.0 if skipped)."""
        if self.installed:
            return 0.0
        # A half-made or differently pinned venv is completed in place: pip moves each pin to its version.
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        for command in self.install_commands():
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join(result.stderr.splitlines()[-20:])
                raise InstallError(f"peer {self.name}: {' '.join(command)} exited {result.returncode}:\n{tail}")
        seconds = time.perf_counter() - started
        first = (self._read_stamp() or {}).get("first_install_seconds", round(seconds, 1))
        stamp = {
            "requirements": list(self.requirements),
            "install_seconds": round(seconds, 1),
            "first_install_seconds": first,  # the one that downloaded everything: what a fresh machine pays
        }
        (self.dir / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        return seconds

    @property
    def first_install_seconds(self) -> float | None:
        """How long the first install into this venv took (the one that downloaded everything), from its stamp."""
        stamp = self._read_stamp()
        return None if stamp is None else stamp.get("first_install_seconds", stamp.get("install_seconds"))

    def _read_stamp(self) -> dict | None:
        try:
            stamp = json.loads((self.dir / STAMP).read_text())
        except (OSError, ValueError):
            return None
        return stamp if isinstance(stamp, dict) else None
