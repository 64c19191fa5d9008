"""The live models: what the registry's ``live.json`` publishes, or ``NBA_MODEL_DIR`` when nothing is published.

:class:`ModelSource` is polled by the strategy watcher (``decision/strategy.py``) next to the rule files: when
``nba publish`` or ``nba rollback`` rewrites ``live.json``, the next poll loads the deployment's models and the
next decision uses them, with no restart. A model that cannot serve (another feature schema, a file cut short,
scores that are not probabilities) is refused and the models serving keep serving.

Every model is first loaded in a child process, at start-up as at run time: LightGBM aborts the whole process,
with no exception to catch, on some damaged model files, and a server must never die of a bad publish. A process
that starts while live.json names a model that cannot serve falls back to the newest earlier deployment that
can (else NBA_MODEL_DIR's model), so a restarted worker never crash-loops on what the running ones refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decision.models import LIVE_FILE, MODEL_FILE, Deployment, ModelError, Registry, RegistryError
from decision.scoring import LightGBMScorer, Scorer
from features.schema import FeatureSchema

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
CHECK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Models:
    """The scorers a strategy decides with: the champion, and the challenger of a split or a shadow run."""

    champion: Scorer
    challenger: Scorer | None = None
    share: float = 0.0
    shadow: bool = False

    def arm(self, customer_id: str) -> tuple[str, Scorer]:
        """Which model decides for this customer: the same one every time (a stable hash of the id)."""
        if self.challenger is not None and not self.shadow and customer_share(customer_id) < self.share:
            return CHALLENGER, self.challenger
        return CHAMPION, self.champion

    @property
    def shadow_scorer(self) -> Scorer | None:
        return self.challenger if self.shadow else None

    def describe(self) -> str:
        if self.challenger is None:
            return self.champion.version
        if self.shadow:
            return f"{self.champion.version} (shadow {self.challenger.version})"
        return f"{self.champion.version} (challenger {self.challenger.version} on {self.share:.0%})"


def customer_share(customer_id: str) -> float:
    """The customer's fixed place in [0, 1): the challenger decides for those below its share."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8, person=b"nba-arm").digest()
    return int.from_bytes(digest, "big") / 2.0**64


def check_model(model_dir: Path, schema_path: Path, actions: Sequence[str]) -> None:
    """Raise ModelError unless the model loads against the schema and scores a probability for every action.

    Runs in a child process, so a file that would crash LightGBM crashes only the child.
    """
    model_dir = Path(model_dir)
    _check_trailer(model_dir / MODEL_FILE)
    command = [sys.executable, "-m", "decision.deployment", str(model_dir), str(schema_path), *actions]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=CHECK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ModelError(f"model {model_dir.name}: the smoke check took over {CHECK_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if done.returncode < 0:
            reason = f"LightGBM crashed loading it (signal {-done.returncode})"
        raise ModelError(f"model {model_dir.name} refused: {reason}")


def smoke_check(scorer: Scorer, schema: FeatureSchema, actions: Sequence[str]) -> None:
    """Every action scored for a customer with the schema's defaults must be a probability."""
    scores = scorer.score(schema.defaults(), list(actions))
    if len(scores) != len(actions):
        raise ModelError(f"model {scorer.version}: {len(scores)} scores for {len(actions)} actions")
    bad = [f"{a}={s!r}" for a, s in zip(actions, scores.tolist(), strict=True) if not (0.0 <= s <= 1.0)]
    if bad or not np.all(np.isfinite(scores)):
        raise ModelError(f"model {scorer.version}: scores are not probabilities: {', '.join(bad[:5])}")


def _check_trailer(path: Path) -> None:
    # A cheap first look: LightGBM's text model ends with its parameters block; a file cut short does not.
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 4096))
            tail = file.read()
    except OSError as exc:
        raise ModelError(f"model {path.parent.name}: {path.name} cannot be read: {exc.strerror}") from None
    if b"end of parameters" not in tail:
        raise ModelError(f"model {path.parent.name}: {path.name} is incomplete (no end of parameters)")


class ModelSource:
    """Reads what serves from the registry's ``live.json``; without one, the model in ``default_dir``."""

    def __init__(
        self, registry_dir: Path, default_dir: Path, schema: FeatureSchema, actions: Sequence[str], schema_path: Path
    ) -> None:
        self.registry = Registry(Path(registry_dir))
        self.default_dir = Path(default_dir)
        self.schema = schema
        self.actions = list(actions)
        self.schema_path = Path(schema_path)
        self.loaded_stamp: tuple[int, int] | None = None  # live.json as it was when load() last read it
        self.refused: str | None = None  # why the live deployment was refused at start (load_serving)

    def stamp(self) -> tuple[int, int] | None:
        """Changes when live.json does: its modification time and size (None: nothing published)."""
        try:
            stat = (self.registry.root / LIVE_FILE).stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def deployment(self) -> Deployment | None:
        return self.registry.live()

    def load(self, actions: Sequence[str] | None = None, *, checked: bool = True) -> Models:
        """The live deployment's scorers, smoke-checked on ``actions`` (default: the catalogue's at start-up).

        Each model is first loaded in a child process unless ``checked`` is False: LightGBM aborts the process
        that loads some damaged files."""
        if actions is not None:
            self.actions = list(actions)
        self.loaded_stamp = self.stamp()
        deployment = self.deployment()
        if deployment is None:
            return Models(self._scorer(self.default_dir, checked))
        return self._models(deployment, checked)

    def load_serving(self) -> Models:
        """What a server process starts with: the live deployment, every model checked in a child process first.

        When the live deployment is refused (a damaged file a running server already refused, a live.json that
        cannot be read), the newest earlier deployment on the registry's stack that passes serves, else the
        model in ``default_dir``; the refusal is logged, kept in ``refused`` and the process starts all the same.
        A process never crash-loops on a bad live.json: the watcher looks at it again only once it changes."""
        self.refused = None
        try:
            return self.load()
        except (ModelError, RegistryError, OSError, ValueError) as error:
            self.refused = str(error)
        try:
            earlier = self.registry.deployments()[:-1]
        except (RegistryError, OSError, ValueError):
            earlier = []
        for deployment in reversed(earlier):
            try:
                models = self._models(deployment, checked=True)
            except ModelError as error:
                log.error("earlier deployment %s cannot serve either: %s", deployment.describe(), error)
                continue
            log.error(
                "live deployment refused (%s); serving the earlier deployment %s",
                self.refused,
                models.describe(),
            )
            return models
        models = Models(self._scorer(self.default_dir, checked=True))
        log.error("live deployment refused (%s); serving the default model %s", self.refused, models.describe())
        return models

    def _models(self, deployment: Deployment, checked: bool) -> Models:
        try:
            champion = self._scorer(self.registry.resolve(deployment.champion), checked)
            challenger = None
            if deployment.challenger is not None:
                challenger = self._scorer(self.registry.resolve(deployment.challenger), checked)
        except RegistryError as exc:
            raise ModelError(str(exc)) from None
        return Models(champion, challenger, deployment.share, deployment.mode == "shadow")

    def _scorer(self, model_dir: Path, checked: bool) -> Scorer:
        if checked:
            check_model(model_dir, self.schema_path, self.actions)
        scorer = LightGBMScorer(model_dir, self.schema)
        smoke_check(scorer, self.schema, self.actions)
        return scorer


def _main(argv: Sequence[str]) -> int:
    """The child process of ``check_model``: MODEL_DIR SCHEMA_PATH ACTION..."""
    model_dir, schema_path, *actions = argv
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        schema = FeatureSchema.load(Path(schema_path))
        smoke_check(LightGBMScorer(Path(model_dir), schema), schema, actions)
    except Exception as exc:  # the child's whole job is to turn any failure to load into a refusal
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
