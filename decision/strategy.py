"""The strategy: everything that decides, held as one value so that one decision never mixes two versions.

A strategy is the action catalogue (values, levers, stock, texts), the rules (every policy file compiled into one
durable-rules ruleset), the explanation templates and the model. The flow reads ``flow.strategy`` once at the
start of a decision and uses only that; a reload replaces it whole, in one assignment, so a request in flight
finishes on the strategy it started with.

:class:`StrategyWatcher` is the hot reload business analysts rely on: it polls the rule files, and a change
that loads and compiles becomes the strategy of the next decision; one that does not is refused, logged with
the file, rule and field at fault, and the last good strategy keeps serving. A change is read only once it is
whole: the files must have stood unchanged for ``settle_s`` (a file still being copied is never half-loaded),
and they must be the same after the parse as before it (a change during the parse is read again at the next
poll). A deployment may also swap the whole policy directory at once, by pointing a symbolic link at another
directory: the link's target is part of what is watched. It polls the published models the
same way (``decision/deployment.py``): ``nba publish`` and ``nba rollback`` reach every running server within
one poll, and a model that cannot serve is refused while the live one keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from decision.catalogue import Catalogue, CatalogueError
from decision.deployment import Models, ModelSource
from decision.eligibility import EligibilityPolicy
from decision.explanation import Narrator, NarratorError, TemplateError
from decision.models import ModelError
from decision.scoring import Scorer
from features.schema import FeatureSchema
from rules.engine import ReasonTexts, RuleFileError, RulesEngine

log = logging.getLogger(__name__)

# What a refused reload can raise: a rule file, the catalogue or the messages file is wrong, or unreadable.
RELOAD_ERRORS = (RuleFileError, CatalogueError, NarratorError, OSError, ValueError)


@dataclass(frozen=True)
class RuleFiles:
    """Where the business-owned files are: the policy directory, the action catalogue and the messages."""

    policy_dir: Path
    catalogue_path: Path
    messages_path: Path

    def paths(self) -> list[Path]:
        return [*sorted(Path(self.policy_dir).glob("*.yaml")), Path(self.catalogue_path), Path(self.messages_path)]

    def stamp(self) -> tuple[tuple[str, int, int], ...]:
        """Where every file really is (a symbolic link swapped to another release), its modification time and
        size, and the policy directory's real place: cheap to take, and changes when a file does."""
        stamps = [(os.path.realpath(self.policy_dir), 0, 0)]
        for path in self.paths():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed between the listing and the stat: the next poll sees the directory as it is
            stamps.append((os.path.realpath(path), stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)


@dataclass(frozen=True)
class Strategy:
    """The catalogue, rules, texts and models one decision is made with."""

    catalogue: Catalogue
    eligibility: EligibilityPolicy
    narrator: Narrator
    models: Models

    @property
    def scorer(self) -> Scorer:
        """The champion model."""
        return self.models.champion

    @property
    def rules(self) -> RulesEngine:
        return self.eligibility.rules

    @property
    def rules_version(self) -> str:
        """Content hash of the policy files and of the explanation templates they speak through."""
        return self.eligibility.version

    def with_models(self, models: Models | Scorer) -> Strategy:
        """The same rules and texts with other models (a published deployment)."""
        return replace(self, models=models if isinstance(models, Models) else Models(models))


def load_strategy(files: RuleFiles, schema: FeatureSchema, models: Models | Scorer) -> Strategy:
    """Load and check the catalogue, the messages and every rule file; raise one of RELOAD_ERRORS if any is bad."""
    return strategy_with(Catalogue.load(files.catalogue_path), files, schema, models)


def strategy_with(catalogue: Catalogue, files: RuleFiles, schema: FeatureSchema, models: Models | Scorer) -> Strategy:
    """The strategy of a catalogue already read (start-up reads it once, for the models too), with the messages
    and rule files of ``files``, checked as load_strategy checks them."""
    narrator = Narrator(files.messages_path, schema)
    for action in catalogue.actions.values():
        missing = action.missing_texts(narrator.languages)
        if missing:
            raise CatalogueError(
                f"{Path(files.catalogue_path).name}: action {action.action_id!r}: no text for {', '.join(missing)} "
                f"(every action speaks the languages of {Path(files.messages_path).name})"
            )
    # A catalogue text that cannot be rendered as written is refused like a rule that does not compile: at start,
    # and on a reload, which keeps the strategy serving (a misspelt placeholder would otherwise show as a blank).
    problems = narrator.catalogue_problems(catalogue.actions, Path(files.catalogue_path).name)
    if problems:
        raise TemplateError(problems)
    for problem in narrator.messages_problems():
        log.warning("%s (nba rules check names every such text)", problem)
    reasons = ReasonTexts(tuple(narrator.languages), narrator.reason_languages(), Path(files.messages_path).name)
    rules = RulesEngine(files.policy_dir, catalogue.action_ids, schema, reasons)
    version = hashlib.sha256(f"{rules.version}:{narrator.version}".encode()).hexdigest()[:12]
    return Strategy(
        catalogue=catalogue,
        eligibility=EligibilityPolicy(catalogue, rules, narrator.languages, version=version),
        narrator=narrator,
        models=models if isinstance(models, Models) else Models(models),
    )


class StrategyWatcher:
    """Reloads the strategy when a rule file, the catalogue or the messages change, or when another model is
    published; refuses a bad change.

    ``current`` reads the live strategy and ``install`` replaces it (the flow's attribute). ``check`` runs one
    poll and is what the background thread calls every ``interval_s``; tests call it directly too.
    """

    def __init__(
        self,
        files: RuleFiles,
        schema: FeatureSchema,
        current: Callable[[], Strategy],
        install: Callable[[Strategy], None],
        interval_s: float = 1.0,
        models: ModelSource | None = None,
        settle_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = files
        self.schema = schema
        self.current = current
        self.install = install
        self.interval_s = interval_s
        self.models = models
        self.settle_s = settle_s
        self.clock = clock
        self.last_error: str | None = None
        self.last_model_error: str | None = models.refused if models is not None else None
        self.reloads = 0
        self.model_swaps = 0
        self._stamp = files.stamp()
        # A change seen but not yet read: its stamp and when it was first seen so (it must settle first).
        self._unsettled: tuple[tuple[tuple[str, int, int], ...], float] | None = None
        self._model_stamp = models.loaded_stamp if models is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self) -> bool:
        """Reload if any file changed since the last look; True when a new strategy was installed."""
        swapped = self.check_models()
        return self.check_rules() or swapped

    def check_models(self) -> bool:
        """Load the published models if ``live.json`` changed; True when they were installed."""
        if self.models is None:
            return False
        with self._lock:
            if self.models.stamp() == self._model_stamp:
                return False
            live = self.current()
            try:
                models = self.models.load(live.catalogue.action_ids)
            except (ModelError, *RELOAD_ERRORS) as error:
                # Refused once per change of live.json, not at every poll: the next publish is looked at afresh.
                self._model_stamp = self.models.loaded_stamp
                self.last_model_error = str(error)
                log.error("model change refused, still serving %s: %s", live.models.describe(), error)
                return False
            self._model_stamp = self.models.loaded_stamp
            self.last_model_error = None
            self.install(self.current().with_models(models))
            self.model_swaps += 1
            log.info("models %s live (were %s)", models.describe(), live.models.describe())
            return True

    def check_rules(self) -> bool:
        """Reload the rule files, catalogue and messages if any changed and the change has settled; True when a
        new strategy was installed."""
        with self._lock:
            stamp = self.files.stamp()
            if stamp == self._stamp:
                self._unsettled = None
                return False
            now = self.clock()
            if self._unsettled is None or self._unsettled[0] != stamp:
                self._unsettled = (stamp, now)  # a new change, or one still being written: wait for it to settle
            if now - self._unsettled[1] < self.settle_s:
                return False
            live = self.current()
            try:
                strategy = load_strategy(self.files, self.schema, live.models)
            except RELOAD_ERRORS as error:
                if self.files.stamp() != stamp:
                    return False  # changed while it was read: the next poll reads the files as they are then
                self._stamp, self._unsettled = stamp, None
                self.last_error = str(error)
                log.error("rules change refused, still serving rules %s: %s", live.rules_version, error)
                return False
            if self.files.stamp() != stamp:
                return False  # changed while it was read: never install a mix of two deployments
            self._stamp, self._unsettled = stamp, None
            self.last_error = None
            if strategy.rules_version == live.rules_version and strategy.catalogue.version == live.catalogue.version:
                return False  # touched, not changed
            self.install(strategy)
            self.reloads += 1
            log.info("rules %s live (were %s)", strategy.rules_version, live.rules_version)
            return True

    def start(self) -> StrategyWatcher:
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nba-rules-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise; the live strategy is untouched
                log.exception("rules watcher: unexpected error; still serving the last good rules")
