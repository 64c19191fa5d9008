"""What-if simulation (``nba simulate``): the whole live decision over a population, and a candidate's difference.

Each row of a population file (CSV or Parquet: ``customer_id``, the schema's features as the online store holds
them, and optional request context) is one decision, made by :meth:`DecisionFlow.decide` itself: the rules, the
model, arbitration and capacity exactly as the service runs them, with no Redis. The flow reads the rows from an
in-memory online store and commits to an in-memory decision log that keeps the log's contract, capacity included:
rows are decided in file order, so the first passengers of a flight take its upgrade seats, as at check-in.
Nothing is written anywhere.

A candidate strategy (another policy directory, catalogue, messages file or model; whatever is not given is the
live one's) is run over the same rows with the same clock, and the two runs are compared decision by decision.

Columns: ``customer_id`` (required); every non-text feature of ``features/schema.yaml`` (required: a feature
missing for the whole population would silently take its default in every decision); text features (optional);
``touchpoint`` (optional; empty cells and a missing column mean ``CHECKIN_KIOSK``, ``--touchpoint`` overrides);
every other column is request context, e.g. ``flight`` (a ``ctx_`` prefix, as ``nba score`` reads, is dropped).
Empty cells are absent values. A value the schema cannot read is refused with the file, column and rows.

Decisions are deterministic: each row's request id is derived from its position, every decision reads the same
clock, and there is no exploration.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decision.catalogue import Catalogue
from decision.domain import Decision, DecisionRequest, Touchpoint
from decision.flow import FlowLimits
from decision.models import ModelError
from decision.offline import offline_flow
from decision.progress import progress
from decision.scoring import LightGBMScorer
from decision.strategy import RELOAD_ERRORS, RuleFiles, Strategy, load_strategy
from features.bulk_load import ID_COLUMN, BulkLoadError, read_table
from features.schema import FeatureSchema

TOUCHPOINT_COLUMN = "touchpoint"
CONTEXT_PREFIX = "ctx_"
DEFAULT_TOUCHPOINT = Touchpoint.CHECKIN_KIOSK
NO_POOL = "(none)"
_TRUE_FALSE = {"1", "0", "true", "false", "yes", "no", "y", "n", "t", "f"}
_SHOWN_ROWS = 5
# Every row is written as of the clock: the file is the population as it is now, never stale.
PROFILE_MAX_AGE_S = 7 * 86_400.0


class SimulationError(ValueError):
    """The population or a strategy cannot be used; the message names the file and the column or field."""


# ---------------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class StrategySpec:
    """The files one strategy is made of: rules, catalogue, messages and model."""

    files: RuleFiles
    model_dir: Path

    def replaced(
        self,
        policy_dir: Path | None = None,
        catalogue_path: Path | None = None,
        messages_path: Path | None = None,
        model_dir: Path | None = None,
    ) -> StrategySpec:
        """This strategy with some of its files replaced (a candidate)."""
        return StrategySpec(
            RuleFiles(
                Path(policy_dir or self.files.policy_dir),
                Path(catalogue_path or self.files.catalogue_path),
                Path(messages_path or self.files.messages_path),
            ),
            Path(model_dir or self.model_dir),
        )

    def load(self, schema: FeatureSchema, role: str) -> Strategy:
        """Compile the rules and load the model; SimulationError names the strategy and what is wrong."""
        policy_dir = Path(self.files.policy_dir)
        if not policy_dir.is_dir() or not any(policy_dir.glob("*.yaml")):
            raise SimulationError(f"{role} strategy: rules directory {policy_dir}: no *.yaml rule files")
        try:
            scorer = LightGBMScorer(self.model_dir, schema)
            return load_strategy(self.files, schema, scorer)
        except ModelError as error:
            raise SimulationError(f"{role} strategy: model {self.model_dir}: {error}") from None
        except RELOAD_ERRORS as error:
            raise SimulationError(f"{role} strategy: {error}") from None

    def describe(self) -> dict[str, str]:
        return {
            "rules": str(self.files.policy_dir),
            "catalogue": str(self.files.catalogue_path),
            "messages": str(self.files.messages_path),
            "model": str(self.model_dir),
        }


@dataclass(frozen=True)
class PopulationRow:
    """One decision to make: whose profile, where, in what context."""

    profile: Mapping[str, str]  # customer_id and the schema's features, as text
    touchpoint: Touchpoint
    context: Mapping[str, str]

    @property
    def customer_id(self) -> str:
        return self.profile[ID_COLUMN]


def read_population(
    path: Path | str, schema: FeatureSchema, touchpoint: str | None = None, limit: int | None = None
) -> list[PopulationRow]:
    """Read and check a population file (see the module docstring); SimulationError names file, column, rows."""
    path = Path(path)
    if not path.exists():
        raise SimulationError(f"{path}: no such population file")
    try:
        table = read_table(path)
    except BulkLoadError as error:
        raise SimulationError(str(error)) from None
    except Exception as error:  # pyarrow's own parse errors: name the file, keep the reason
        raise SimulationError(f"{path}: cannot be read as a population: {error}") from None
    if limit is not None:
        table = table.slice(0, max(0, limit))
    names = table.column_names
    required = [ID_COLUMN] + [f.name for f in schema.features if f.type != "text"]
    missing = [name for name in required if name not in names]
    if missing:
        raise SimulationError(
            f"{path}: column(s) {', '.join(missing)} missing; a population needs {ID_COLUMN} and every feature of "
            "the schema (features/schema.yaml) but the text ones"
        )
    columns = {name: [_text(value) for value in table.column(name).to_pylist()] for name in names}
    _check_ids(path, columns[ID_COLUMN])
    for name in names:
        feature = schema.by_name.get(name)
        if feature is not None:
            _check_feature(path, name, feature.type, feature.values, columns[name])
    touchpoints = _touchpoints(path, columns.get(TOUCHPOINT_COLUMN), table.num_rows, touchpoint)
    context_columns = {
        name.removeprefix(CONTEXT_PREFIX): name
        for name in names
        if name != ID_COLUMN and name != TOUCHPOINT_COLUMN and name not in schema.by_name
    }
    features = [name for name in names if name == ID_COLUMN or name in schema.by_name]
    rows = []
    for i in range(table.num_rows):
        profile = {name: columns[name][i] for name in features if columns[name][i] != ""}
        context = {key: columns[name][i] for key, name in context_columns.items() if columns[name][i] != ""}
        rows.append(PopulationRow(profile, touchpoints[i], context))
    return rows


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).strip()


def _rows_named(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_SHOWN_ROWS])
    more = ", ..." if len(rows) > _SHOWN_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more} ({len(rows)} row{'s' if len(rows) > 1 else ''})"


def _check_ids(path: Path, ids: Sequence[str]) -> None:
    empty = [i + 1 for i, value in enumerate(ids) if value == ""]
    if empty:
        raise SimulationError(f"{path}: column {ID_COLUMN}: {_rows_named(empty)} empty")


def _check_feature(path: Path, name: str, ftype: str, values: Sequence[str], cells: Sequence[str]) -> None:
    """Refuse what the service would silently replace by the default: a what-if must see the data as given."""
    accepts: Callable[[str], bool]
    if ftype in ("number", "integer", "timestamp"):
        accepts = _is_number
        expected = "a number" + (" (epoch seconds)" if ftype == "timestamp" else "")
    elif ftype == "boolean":
        accepts = lambda cell: cell.lower() in _TRUE_FALSE  # noqa: E731
        expected = "a boolean (1/0, true/false)"
    elif ftype == "category":
        known = set(values)
        accepts = known.__contains__
        expected = f"one of {', '.join(values)}"
    else:
        return
    bad = [i + 1 for i, cell in enumerate(cells) if cell != "" and not accepts(cell)]
    if bad:
        example = cells[bad[0] - 1]
        raise SimulationError(f"{path}: column {name!r} ({ftype}): {_rows_named(bad)} not {expected}, e.g. {example!r}")


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _touchpoints(path: Path, cells: Sequence[str] | None, n: int, override: str | None) -> list[Touchpoint]:
    accepted = ", ".join(t.name for t in Touchpoint)
    if override:
        try:
            return [Touchpoint.named(override)] * n
        except ValueError as exc:
            raise SimulationError(f"--touchpoint: {exc}") from None
    if cells is None:
        return [DEFAULT_TOUCHPOINT] * n
    result, bad = [], []
    for i, cell in enumerate(cells):
        try:
            result.append(Touchpoint.named(cell) if cell else DEFAULT_TOUCHPOINT)
        except ValueError:
            bad.append(i + 1)
            result.append(DEFAULT_TOUCHPOINT)
    if bad:
        raise SimulationError(
            f"{path}: column {TOUCHPOINT_COLUMN!r}: {_rows_named(bad)} not a touchpoint, e.g. "
            f"{cells[bad[0] - 1]!r}; accepted: {accepted}"
        )
    return result


# ---------------------------------------------------------------------------------------------------------
# Running one strategy


class PopulationRun:
    """One strategy over the population: the live flow, an in-memory store and log, one clock for every decision."""

    def __init__(self, strategy: Strategy, schema: FeatureSchema, now: float) -> None:
        # Feature contributions only word the explanation; skipping them changes no ranking. No exploration:
        # a what-if compares strategies, and random first actions would blur the difference. Fresh stock: every
        # pool (flight) starts with the catalogue's units, as on the day.
        limits = FlowLimits(feature_max_age_s=PROFILE_MAX_AGE_S, explain_top_features=0, exploration_share=0.0)
        offline = offline_flow(strategy, schema, limits, now)
        self.store = offline.store
        self.decision_log = offline.log
        self.flow = offline.flow
        self.now = now

    def decide(self, index: int, row: PopulationRow) -> Decision:
        # The file's row is the customer's profile as of this decision (a customer may appear twice).
        self.store.write_profiles([row.profile], self.now)
        request = DecisionRequest(
            customer_id=row.customer_id,
            touchpoint=row.touchpoint,
            context=row.context,
            request_id=f"simulate-{index + 1}",
            max_actions=self.flow.catalogue.default_max_actions,
        )
        return self.flow.decide(request)


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass
class StrategySummary:
    """What one strategy did to the population."""

    decisions: int = 0
    first_actions: Counter[str] = field(default_factory=Counter)
    offered: Counter[str] = field(default_factory=Counter)
    no_action: int = 0
    mandatory: Counter[str] = field(default_factory=Counter)
    expected_value_first: float = 0.0
    expected_value_offered: float = 0.0
    granted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, pool) -> units taken
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, pool) -> sold out
    capacity: dict[str, tuple[str, int]] = field(default_factory=dict)  # action -> (per, units)
    degraded: Counter[str] = field(default_factory=Counter)
    unknown_customers: int = 0
    currency: str = "EUR"

    def add(self, decision: Decision, context: Mapping[str, str], catalogue: Catalogue) -> None:
        self.decisions += 1
        if decision.actions:
            first = decision.actions[0]
            self.first_actions[first.action_id] += 1
            self.expected_value_first += first.propensity * first.value
        else:
            self.no_action += 1
        for action in decision.actions:
            self.offered[action.action_id] += 1
            self.expected_value_offered += action.propensity * action.value
            if action.mandatory:
                self.mandatory[action.action_id] += 1
            capacity = catalogue.actions[action.action_id].capacity
            if capacity is not None:
                self.granted[(action.action_id, context.get(capacity.per) or NO_POOL)] += 1
        for suppression in decision.explanation.suppressed:
            if suppression.reason_code == "capacity_exhausted":
                capacity = catalogue.actions[suppression.action_id].capacity
                pool = context.get(capacity.per) if capacity is not None else None
                self.refused[(suppression.action_id, pool or NO_POOL)] += 1
        self.degraded.update(decision.degraded_codes)
        self.unknown_customers += not decision.features.found

    @property
    def mandatory_recoveries(self) -> int:
        return sum(self.mandatory.values())

    def to_json(self) -> dict[str, Any]:
        pools = sorted(set(self.granted) | set(self.refused))
        return {
            "decisions": self.decisions,
            "first_actions": _shares(self.first_actions, self.decisions),
            "no_action": self.no_action,
            "offered": dict(sorted(self.offered.items(), key=lambda kv: (-kv[1], kv[0]))),
            "expected_value": {
                "currency": self.currency,
                "first_action": round(self.expected_value_first, 4),
                "all_offered": round(self.expected_value_offered, 4),
            },
            "mandatory_recoveries": {"total": self.mandatory_recoveries, **dict(sorted(self.mandatory.items()))},
            "capacity": [
                {
                    "action": action,
                    "per": self.capacity[action][0] if action in self.capacity else "",
                    "pool": pool,
                    "units": self.capacity[action][1] if action in self.capacity else None,
                    "granted": self.granted[(action, pool)],
                    "refused": self.refused[(action, pool)],
                }
                for action, pool in pools
            ],
            "granted_total": sum(self.granted.values()),
            "refused_total": sum(self.refused.values()),
            "degraded": dict(sorted(self.degraded.items())),
            "unknown_customers": self.unknown_customers,
        }


def _shares(counts: Counter[str], total: int) -> dict[str, dict[str, float | int]]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {key: {"count": n, "share": round(n / total, 4) if total else 0.0} for key, n in ordered}


@dataclass
class StrategyDiff:
    """The candidate against the live strategy, decision by decision."""

    decisions: int = 0
    first_action_changed: int = 0
    offers_changed: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    changed_customers: list[str] = field(default_factory=list)

    def add(self, live: Decision, candidate: Decision) -> None:
        self.decisions += 1
        live_first = live.actions[0].action_id if live.actions else ""
        candidate_first = candidate.actions[0].action_id if candidate.actions else ""
        if [a.action_id for a in live.actions] != [a.action_id for a in candidate.actions]:
            self.offers_changed += 1
        if live_first != candidate_first:
            self.first_action_changed += 1
            self.transitions[(live_first, candidate_first)] += 1
            self.changed_customers.append(live.customer_id)


@dataclass
class SimulationReport:
    """Everything ``nba simulate`` prints; ``summary()`` is its JSON."""

    population: str
    now: float
    live_spec: StrategySpec
    live: StrategySummary
    live_versions: dict[str, str]
    decisions_per_s: float
    candidate_spec: StrategySpec | None = None
    candidate: StrategySummary | None = None
    candidate_versions: dict[str, str] | None = None
    diff: StrategyDiff | None = None
    top: int = 10
    # Every decision, in population order (what a notebook looks into: why did this customer change?).
    live_decisions: list[Decision] = field(default_factory=list, repr=False)
    candidate_decisions: list[Decision] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The report's numbers as JSON-ready data (no timings: the same run gives the same summary)."""
        result: dict[str, Any] = {
            "population": self.population,
            "now": self.now,
            "decisions": self.live.decisions,
            "live": {"strategy": self.live_spec.describe() | self.live_versions, **self.live.to_json()},
        }
        if self.candidate is not None and self.diff is not None and self.candidate_spec is not None:
            live, candidate, diff = self.live, self.candidate, self.diff
            result["candidate"] = {
                "strategy": self.candidate_spec.describe() | (self.candidate_versions or {}),
                **candidate.to_json(),
            }
            result["difference"] = {
                "first_action_changed": diff.first_action_changed,
                "first_action_changed_share": round(diff.first_action_changed / diff.decisions, 4)
                if diff.decisions
                else 0.0,
                "offers_changed": diff.offers_changed,
                "transitions": [
                    {"live": a or None, "candidate": b or None, "count": n}
                    for (a, b), n in sorted(diff.transitions.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top]
                ],
                "changed_customers": diff.changed_customers,
                "expected_value_first_action": round(candidate.expected_value_first - live.expected_value_first, 4),
                "expected_value_all_offered": round(candidate.expected_value_offered - live.expected_value_offered, 4),
                "upgrades_granted": sum(candidate.granted.values()) - sum(live.granted.values()),
                "refused_for_capacity": sum(candidate.refused.values()) - sum(live.refused.values()),
                "mandatory_recoveries": candidate.mandatory_recoveries - live.mandatory_recoveries,
            }
        return result

    def text(self) -> str:
        """The readable report (no timings either: the same run gives the same text)."""
        lines = [
            f"simulated {self.live.decisions:,} decisions of {self.population} "
            f"(clock {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.now))}, epoch {self.now:.0f})",
            "",
        ]
        lines += _strategy_lines("live", self.live_spec, self.live_versions, self.live)
        if self.candidate is not None and self.diff is not None and self.candidate_spec is not None:
            lines.append("")
            lines += _strategy_lines("candidate", self.candidate_spec, self.candidate_versions or {}, self.candidate)
            lines.append("")
            lines += self._diff_lines(self.live, self.candidate, self.diff)
        return "\n".join(lines)

    def _diff_lines(self, live: StrategySummary, candidate: StrategySummary, diff: StrategyDiff) -> list[str]:
        share = diff.first_action_changed / diff.decisions if diff.decisions else 0.0
        lines = [
            "candidate minus live",
            f"  first action changed     {diff.first_action_changed:,} of {diff.decisions:,} ({share:.1%})",
            f"  offers changed           {diff.offers_changed:,}",
            f"  expected value, first    {candidate.expected_value_first - live.expected_value_first:+,.2f} "
            f"{live.currency}",
            f"  expected value, offered  {candidate.expected_value_offered - live.expected_value_offered:+,.2f} "
            f"{live.currency}",
            f"  upgrades granted         {sum(candidate.granted.values()) - sum(live.granted.values()):+,}",
            f"  refused for capacity     {sum(candidate.refused.values()) - sum(live.refused.values()):+,}",
            f"  mandatory recoveries     {candidate.mandatory_recoveries - live.mandatory_recoveries:+,}",
        ]
        top = sorted(diff.transitions.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top]
        if top:
            labels = [f"{a or '(nothing)'} -> {b or '(nothing)'}" for (a, b), _ in top]
            width = max(len(label) for label in labels) + 2
            lines.append(f"  top changes (live -> candidate){'':<{max(0, width - 29)}}{'customers':>10}")
            lines += [f"    {label:<{width}}{n:>10,}" for label, (_, n) in zip(labels, top, strict=True)]
        return lines


def _strategy_lines(role: str, spec: StrategySpec, versions: Mapping[str, str], s: StrategySummary) -> list[str]:
    lines = [
        f"{role} strategy: rules {versions.get('rules_version', '')}, "
        f"catalogue {versions.get('catalogue_version', '')}, model {versions.get('model_version', '')}",
        f"  first action{'':<28}{'count':>8}{'share':>9}",
    ]
    for action, n in sorted(s.first_actions.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"    {action:<36}{n:>8,}{n / s.decisions:>9.1%}")
    if s.no_action:
        lines.append(f"    {'(nothing offered)':<36}{s.no_action:>8,}{s.no_action / s.decisions:>9.1%}")
    offered = ", ".join(f"{a} {n:,}" for a, n in sorted(s.offered.items(), key=lambda kv: (-kv[1], kv[0])))
    lines.append(f"  offered (all ranks): {offered or 'nothing'}")
    lines.append(
        f"  expected value: first action {s.expected_value_first:,.2f} {s.currency}, "
        f"all offered {s.expected_value_offered:,.2f} {s.currency}"
    )
    mandatory = ", ".join(f"{a} {n:,}" for a, n in sorted(s.mandatory.items()))
    lines.append(f"  mandatory recoveries: {s.mandatory_recoveries:,}" + (f" ({mandatory})" if mandatory else ""))
    for action, pool in sorted(set(s.granted) | set(s.refused)):
        per, units = s.capacity.get(action, ("pool", 0))
        lines.append(
            f"  {action} {per} {pool}: {s.granted[(action, pool)]:,} granted of {units:,}, "
            f"{s.refused[(action, pool)]:,} refused for capacity"
        )
    degraded = ", ".join(f"{code} {n:,}" for code, n in sorted(s.degraded.items()))
    lines.append(f"  degraded: {sum(s.degraded.values()):,}" + (f" ({degraded})" if degraded else ""))
    lines.append(f"  unknown customers: {s.unknown_customers:,}")
    return lines


# ---------------------------------------------------------------------------------------------------------
# The simulation


def simulate(
    population: Path | str,
    live: StrategySpec,
    candidate: StrategySpec | None = None,
    *,
    schema: FeatureSchema,
    touchpoint: str | None = None,
    limit: int | None = None,
    now: float | None = None,
    top: int = 10,
) -> SimulationReport:
    """Decide every row of ``population`` with the live strategy (and the candidate), and summarise; the rows
    and models are read by ``schema`` (the caller's)."""
    rows = read_population(population, schema, touchpoint, limit)
    strategies = [live.load(schema, "live")]
    if candidate is not None:
        strategies.append(candidate.load(schema, "candidate"))
    now = time.time() if now is None else float(now)
    runs = [PopulationRun(strategy, schema, now) for strategy in strategies]
    summaries = [_summary_for(strategy) for strategy in strategies]
    diff = StrategyDiff() if candidate is not None else None
    kept: list[list[Decision]] = [[] for _ in runs]
    started = time.perf_counter()
    for index, row in enumerate(progress(rows, desc="simulate", unit="customer")):
        decisions = [run.decide(index, row) for run in runs]
        for summary, decision, strategy, decided in zip(summaries, decisions, strategies, kept, strict=True):
            summary.add(decision, row.context, strategy.catalogue)
            decided.append(decision)
        if diff is not None:
            diff.add(decisions[0], decisions[1])
    elapsed = time.perf_counter() - started
    return SimulationReport(
        population=Path(population).name,
        now=now,
        live_spec=live,
        live=summaries[0],
        live_versions=_versions(strategies[0]),
        decisions_per_s=len(rows) * len(runs) / elapsed if elapsed > 0 else 0.0,
        candidate_spec=candidate,
        candidate=summaries[1] if candidate is not None else None,
        candidate_versions=_versions(strategies[1]) if candidate is not None else None,
        diff=diff,
        top=top,
        live_decisions=kept[0],
        candidate_decisions=kept[1] if candidate is not None else [],
    )


def _summary_for(strategy: Strategy) -> StrategySummary:
    catalogue = strategy.catalogue
    capacity = {a.action_id: (a.capacity.per, a.capacity.units) for a in catalogue.actions.values() if a.capacity}
    return StrategySummary(capacity=capacity, currency=catalogue.currency)


def _versions(strategy: Strategy) -> dict[str, str]:
    return {
        "rules_version": strategy.rules_version,
        "catalogue_version": strategy.catalogue.version,
        "model_version": strategy.scorer.version,
    }
