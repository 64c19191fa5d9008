"""Importing a decision log for training and evaluation: the service's own export or any CSV/Parquet file.

A log has one row per (decision, action taken): feature columns, an action column, an outcome column (0/1, or a
value such as spend) and, optionally, a propensity column: the probability with which the logging policy chose
that row's action. Categorical text columns, missing values and a log with one action need no hand-editing.

Features reach the model in one of two encodings (``FeatureEncoding``):

* **schema**: the log holds the service's features (``features/schema.yaml``, under the names the model sees,
  e.g. ``last_incident_days``). Values are parsed and encoded exactly as the serving path does
  (``Feature.parse`` then ``Feature.encode``), actions must be catalogue ids, and the trained model can go live.
* **log**: any other columns. Numbers stay numbers, text becomes a category (codes in sorted order, kept in the
  model so ``nba score`` encodes new rows the same way). Such a model can be scored and evaluated, not served.

A log that cannot be used is refused with a ``LogError`` naming the column and the rows (row 1 is the first
data row, the header not counted).
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from features.schema import SECONDS_PER_DAY, FeatureSchema

# Columns read as the log's clock when --time-column is not given (the service's export writes decided_at).
TIME_COLUMNS = ("decided_at", "timestamp", "time", "event_time")
# Identifiers: never features unless asked for by name.
ID_COLUMNS = ("decision_id", "request_id", "customer_id")
# Text outcomes the service writes, and the usual spellings of yes and no.
OUTCOME_WORDS = {
    "accepted": 1.0,
    "declined": 0.0,
    "ignored": 0.0,
    "true": 1.0,
    "false": 0.0,
    "yes": 1.0,
    "no": 0.0,
}
ROWS_NAMED = 10  # how many row numbers an error message lists before "..."


class LogError(ValueError):
    """The log cannot be used; the message names the column and the rows."""


@dataclass(frozen=True)
class LogColumns:
    """Which column is what. ``features=None`` takes every other column; ``time=None`` looks for one by name."""

    action: str
    outcome: str
    propensity: str | None = None
    features: tuple[str, ...] | None = None
    time: str | None = None


@dataclass(frozen=True)
class FeatureColumn:
    """One of the log's own columns as the model sees it: a number, or a category with its codes."""

    name: str
    kind: Literal["number", "category"]
    categories: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}


@dataclass(frozen=True)
class FeatureEncoding:
    """How a log's columns become the model's numbers (see the module docstring)."""

    mode: Literal["schema", "log"]
    columns: tuple[FeatureColumn, ...] = ()

    @property
    def servable(self) -> bool:
        return self.mode == "schema"

    def feature_names(self, schema: FeatureSchema) -> list[str]:
        if self.mode == "schema":
            return schema.model_feature_names
        return model_names([c.name for c in self.columns])

    def categorical_names(self, schema: FeatureSchema) -> list[str]:
        if self.mode == "schema":
            return schema.categorical_feature_names
        names = self.feature_names(schema)
        return [n for n, c in zip(names, self.columns, strict=True) if c.kind == "category"]

    def source_columns(self, schema: FeatureSchema) -> list[str]:
        """The log columns the features come from."""
        if self.mode == "schema":
            return schema.model_feature_names
        return [c.name for c in self.columns]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureEncoding:
        mode = data["mode"]
        if mode not in ("schema", "log"):
            raise ValueError(f"encoding mode {mode!r} is not schema or log")
        columns = tuple(
            FeatureColumn(str(c["name"]), c["kind"], tuple(str(v) for v in c.get("categories", ())))
            for c in data.get("columns", ())
        )
        return cls(mode=mode, columns=columns)


@dataclass
class ImportedLog:
    """A usable log: the original table and the arrays training and evaluation need, in file order."""

    table: pa.Table
    columns: LogColumns  # resolved: features and time filled in
    encoding: FeatureEncoding
    features: np.ndarray  # rows x features, float64 (NaN = missing)
    actions: np.ndarray  # action id per row (str objects)
    outcomes: np.ndarray  # float64
    propensities: np.ndarray | None  # float64 in (0, 1], or None when the log has none
    times: np.ndarray | None  # float64 (epoch seconds when the column is a time), or None: file order
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcomes)

    @property
    def order(self) -> np.ndarray:
        """Row indices in time order (file order for ties, or when the log has no time column)."""
        if self.times is None:
            return np.arange(len(self))
        return np.argsort(self.times, kind="stable")

    @property
    def outcome_kind(self) -> Literal["binary", "value"]:
        return "binary" if bool(np.isin(self.outcomes, (0.0, 1.0)).all()) else "value"

    @property
    def action_ids(self) -> list[str]:
        """The distinct actions of the log, numbers in numeric order, then text in text order."""
        return sorted_actions(set(self.actions.tolist()))

    @property
    def fingerprint(self) -> str:
        """sha256 of what training reads (features, actions, outcomes, propensities, times), whatever the file."""
        digest = hashlib.sha256()
        digest.update(repr(self.encoding.to_json()).encode())
        digest.update(np.ascontiguousarray(self.features).tobytes())
        digest.update("\x1f".join(self.actions.tolist()).encode())
        digest.update(self.outcomes.tobytes())
        digest.update(b"-" if self.propensities is None else self.propensities.tobytes())
        digest.update(b"-" if self.times is None else self.times.tobytes())
        return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Reading


def read_table(path: Path) -> pa.Table:
    """A CSV or Parquet file as an Arrow table; in a CSV, empty cells are missing values."""
    path = Path(path)
    if not path.exists():
        raise LogError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    if suffix in (".csv", ".txt"):
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if not header:
            raise LogError(f"{path}: empty file (no header row)")
        # An empty text cell is a missing value, not the category "".
        options = pa_csv.ConvertOptions(strings_can_be_null=True)
        return pa_csv.read_csv(path, convert_options=options)
    raise LogError(f"{path}: unsupported file type {suffix!r}; accepted: .csv, .parquet")


def write_table(table: pa.Table, path: Path) -> Path:
    """Write a log as CSV or Parquet, by the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        pq.write_table(table, path)
    elif suffix in (".csv", ".txt"):
        pa_csv.write_csv(table, path)
    else:
        raise LogError(f"{path}: unsupported file type {suffix!r}; accepted: .csv, .parquet")
    return path


def import_log(
    source: Path | pa.Table,
    columns: LogColumns,
    schema: FeatureSchema,
    *,
    catalogue_actions: Sequence[str] | None = None,
    encoding: FeatureEncoding | None = None,
    known_actions: Sequence[str] | None = None,
    now: float | None = None,
) -> ImportedLog:
    """Read and check a log; refuse it (``LogError``) when it cannot be used.

    Without ``encoding`` (training) the encoding is chosen from the columns: the service's schema when the log
    holds every model feature of ``schema`` (its actions must then be ``catalogue_actions``), the log's own
    columns otherwise. With ``encoding`` (evaluating or scoring with a trained model) the log is encoded the
    model's way and its actions must be among ``known_actions``. ``now`` stands in for the log's clock when a
    raw timestamp feature needs one and the log has no time column.
    """
    table = source if isinstance(source, pa.Table) else read_table(source)
    where = "" if isinstance(source, pa.Table) else str(source)
    if table.num_rows == 0:
        raise LogError(f"{where or 'the log'}: no rows")
    for role, name in (("action", columns.action), ("outcome", columns.outcome), ("propensity", columns.propensity)):
        if name is not None and name not in table.column_names:
            raise LogError(
                f"{role} column {name!r} is missing; columns found: {', '.join(map(repr, table.column_names))}"
            )

    notes: list[str] = []
    time_column = _time_column(table, columns)
    times = _times(table, time_column) if time_column else None
    actions = _actions(table, columns.action)
    outcomes = _outcomes(table, columns.outcome)
    propensities = _propensities(table, columns.propensity) if columns.propensity else None
    if propensities is None:
        notes.append("no propensity column: off-policy estimates will assume uniform logging and cannot be trusted")

    taken = {columns.action, columns.outcome, columns.propensity, time_column}
    if encoding is None:
        encoding, feature_notes = choose_encoding(table, columns, schema, taken)
        notes.extend(feature_notes)
        if encoding.servable and catalogue_actions is not None:
            known_actions = catalogue_actions
    if known_actions is not None:
        _check_known_actions(actions, columns.action, known_actions, encoding)
    features = encode_features(table, encoding, schema, times if time_column else None, now)
    resolved = replace(columns, features=tuple(encoding.source_columns(schema)), time=time_column)
    if len(set(actions.tolist())) == 1:
        notes.append(f"one action only ({actions[0]!r}): the model learns who responds, not which action to choose")
    return ImportedLog(
        table=table,
        columns=resolved,
        encoding=encoding,
        features=features,
        actions=actions,
        outcomes=outcomes,
        propensities=propensities,
        times=times,
        source=where,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------------
# Features


def schema_feature_sources(table: pa.Table, schema: FeatureSchema) -> dict[str, str] | None:
    """For each model feature of the schema, the column that holds it; None when one is missing.

    A timestamp feature is read as days since (``last_incident_days``) or as the raw epoch (``last_incident``).
    """
    sources = {}
    names = set(table.column_names)
    for feature in schema.model_features:
        if feature.derived_name in names:
            sources[feature.derived_name] = feature.derived_name
        elif feature.type == "timestamp" and feature.name in names:
            sources[feature.derived_name] = feature.name
        else:
            return None
    return sources


def choose_encoding(
    table: pa.Table, columns: LogColumns, schema: FeatureSchema, taken: Iterable[str | None]
) -> tuple[FeatureEncoding, list[str]]:
    """The schema's encoding when the log holds the service's features (and no others were asked for)."""
    sources = schema_feature_sources(table, schema)
    wanted = columns.features
    if sources is not None and (wanted is None or set(wanted) == set(sources.values())):
        return FeatureEncoding("schema"), []

    notes: list[str] = []
    excluded = {name for name in taken if name}
    if wanted is None:
        names = []
        for name in table.column_names:
            if name in excluded or name in ID_COLUMNS:
                continue
            if name == "" or name.startswith("Unnamed"):
                notes.append(f"column {name!r}: an unnamed index column, not used as a feature")
                continue
            if _is_identifier(table.column(name)):
                notes.append(f"column {name!r}: every value differs (an identifier), not used as a feature")
                continue
            names.append(name)
    else:
        missing = [n for n in wanted if n not in table.column_names]
        if missing:
            raise LogError(
                f"feature columns {', '.join(map(repr, missing))} are missing; "
                f"columns found: {', '.join(map(repr, table.column_names))}"
            )
        clash = [n for n in wanted if n in excluded]
        if clash:
            raise LogError(f"feature columns {', '.join(map(repr, clash))} are the action, outcome or time column")
        names = list(wanted)
    if not names:
        notes.append("no feature columns: the model learns each action's average outcome")
    return FeatureEncoding("log", tuple(_feature_column(name, table.column(name)) for name in names)), notes


def encode_features(
    table: pa.Table,
    encoding: FeatureEncoding,
    schema: FeatureSchema,
    times: np.ndarray | None = None,
    now: float | None = None,
) -> np.ndarray:
    """The model's feature matrix (rows x features, NaN for missing) for a table, the encoding's way."""
    if encoding.mode == "schema":
        return _encode_schema(table, schema, times, now)
    missing = [c.name for c in encoding.columns if c.name not in table.column_names]
    if missing:
        raise LogError(f"feature columns {', '.join(map(repr, missing))} are missing (the model was trained on them)")
    matrix = np.empty((table.num_rows, len(encoding.columns)), dtype=np.float64)
    for j, column in enumerate(encoding.columns):
        data = table.column(column.name)
        if column.kind == "category":
            codes = {value: float(i) for i, value in enumerate(column.categories)}
            matrix[:, j] = _map_text(data, lambda text, codes=codes: codes.get(text, math.nan) if text else math.nan)
        else:
            matrix[:, j] = numeric_column(data, column.name)
    return matrix


def schema_values(
    table: pa.Table, schema: FeatureSchema, times: np.ndarray | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """Each row's typed feature values (``FeatureSchema.parse``'s result), for the rules and the ground truth.

    Features the table lacks take the schema's defaults, as for a profile that lacks them.
    """
    rows: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
    clock = _clock(table.num_rows, times, now)
    names = set(table.column_names)
    for feature in schema.features:
        if feature.type == "timestamp":
            if feature.derived_name in names:
                days = numeric_column(table.column(feature.derived_name), feature.derived_name)
            elif feature.name in names:
                days = np.maximum(
                    0.0, (clock - numeric_column(table.column(feature.name), feature.name)) / SECONDS_PER_DAY
                )
            else:
                days = np.full(table.num_rows, np.nan)
            for row, value in zip(rows, days.tolist(), strict=True):
                row[feature.derived_name] = None if math.isnan(value) else value
            continue
        if feature.name in names:
            parsed = _map_values(table.column(feature.name), lambda text, f=feature: f.parse(text, 0.0))
        else:
            parsed = [feature.default] * table.num_rows
        for row, value in zip(rows, parsed, strict=True):
            row[feature.derived_name] = value
    return rows


def model_names(columns: Sequence[str]) -> list[str]:
    """Feature names LightGBM accepts (no JSON punctuation), unique, and never the action feature's name."""
    names: list[str] = []
    for column in columns:
        base = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in column) or "column"
        name, n = base, 1
        while name in names or name == "action":
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _encode_schema(table: pa.Table, schema: FeatureSchema, times: np.ndarray | None, now: float | None) -> np.ndarray:
    sources = schema_feature_sources(table, schema)
    if sources is None:
        missing = [
            f.derived_name
            for f in schema.model_features
            if f.derived_name not in table.column_names and not (f.type == "timestamp" and f.name in table.column_names)
        ]
        raise LogError(f"feature columns {', '.join(map(repr, missing))} are missing (the model was trained on them)")
    clock = _clock(table.num_rows, times, now)
    matrix = np.empty((table.num_rows, len(schema.model_features)), dtype=np.float64)
    for j, feature in enumerate(schema.model_features):
        column = sources[feature.derived_name]
        data = table.column(column)
        if feature.type == "timestamp":
            values = numeric_column(data, column)
            matrix[:, j] = (
                values if column == feature.derived_name else np.maximum(0.0, (clock - values) / SECONDS_PER_DAY)
            )
        else:
            # The serving path's own parse and encode, once per distinct value: the model sees what it will see live.
            matrix[:, j] = _map_text(data, lambda text, f=feature: f.encode(f.parse(text, 0.0)))
    return matrix


def _feature_column(name: str, data: pa.ChunkedArray) -> FeatureColumn:
    if pa.types.is_dictionary(data.type):
        data = data.cast(data.type.value_type)
    kind = data.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = pc.unique(pc.drop_null(data)).to_pylist()
        return FeatureColumn(name, "category", tuple(sorted(str(v) for v in values if v != "")))
    if _is_numeric(kind):
        return FeatureColumn(name, "number")
    raise LogError(f"feature column {name!r}: type {data.type} is neither a number, a time nor text")


def _is_numeric(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_temporal(kind)
        or pa.types.is_null(kind)
    )


def _is_identifier(data: pa.ChunkedArray) -> bool:
    kind = data.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    return text and len(data) > 50 and data.null_count == 0 and len(pc.unique(data)) == len(data)


# ---------------------------------------------------------------------------------------------------------
# Action, outcome, propensity, time


def sorted_actions(actions: Iterable[str]) -> list[str]:
    """Action ids that are numbers in numeric order (0, 1, 2, 10), then the others in text order."""

    def key(action: str) -> tuple[int, float, str]:
        try:
            return (0, float(action), action)
        except ValueError:
            return (1, 0.0, action)

    return sorted(actions, key=key)


def _actions(table: pa.Table, name: str) -> np.ndarray:
    data = table.column(name)
    if pa.types.is_floating(data.type):
        # 3.0 is action "3": floats appear when a tool wrote integer ids through a float column
        numbers = data.to_numpy(zero_copy_only=False)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        if whole.all():
            data = pa.chunked_array([pa.array(numbers.astype(np.int64))])
    values = data.cast(pa.string()).to_pylist()
    empty = [i for i, v in enumerate(values) if v is None or v.strip() == ""]
    if empty:
        raise LogError(f"{name}: {_rows(empty)} have no action")
    return np.array([v.strip() for v in values], dtype=object)


def _check_known_actions(actions: np.ndarray, column: str, known: Sequence[str], encoding: FeatureEncoding) -> None:
    known_set = set(known)
    unknown: dict[str, list[int]] = {}
    for i, action in enumerate(actions.tolist()):
        if action not in known_set:
            unknown.setdefault(action, []).append(i)
    if unknown:
        listed = "; ".join(f"{a!r} ({_rows(rows)})" for a, rows in list(unknown.items())[:ROWS_NAMED])
        whose = "the catalogue's (rules/actions.yaml)" if encoding.servable else "the model's"
        hint = (
            " (to train on the log's own actions, name the feature columns: the model then cannot go live)"
            if encoding.servable
            else ""
        )
        raise LogError(
            f"{column}: unknown action ids {listed}; {whose} actions are {', '.join(map(repr, known))}{hint}"
        )


def _outcomes(table: pa.Table, name: str) -> np.ndarray:
    data = table.column(name)
    if pa.types.is_boolean(data.type) or pa.types.is_integer(data.type) or pa.types.is_floating(data.type):
        values = data.cast(pa.float64()).to_numpy(zero_copy_only=False)
        empty = [i for i in range(len(values)) if math.isnan(values[i])]
        if empty:
            raise LogError(f"{name}: {_rows(empty)} have no outcome")
        infinite = np.flatnonzero(~np.isfinite(values)).tolist()
        if infinite:
            raise LogError(f"{name}: {_rows(infinite)} are infinite")
        return values.astype(np.float64)
    if pa.types.is_string(data.type) or pa.types.is_large_string(data.type):
        texts = data.to_pylist()
        out = np.empty(len(texts), dtype=np.float64)
        empty, unreadable = [], []
        for i, text in enumerate(texts):
            if text is None or text.strip() == "":
                empty.append(i)
                continue
            word = text.strip().lower()
            if word in OUTCOME_WORDS:
                out[i] = OUTCOME_WORDS[word]
                continue
            try:
                out[i] = float(word)
            except ValueError:
                unreadable.append(i)
                continue
            if not math.isfinite(out[i]):
                unreadable.append(i)
        if empty:
            raise LogError(f"{name}: {_rows(empty)} have no outcome")
        if unreadable:
            examples = ", ".join(sorted({repr(texts[i]) for i in unreadable})[:5])
            raise LogError(
                f"{name}: {_rows(unreadable)} are neither a number nor accepted/declined/ignored (e.g. {examples})"
            )
        return out
    raise LogError(f"{name}: type {data.type} is not an outcome (0/1, a number, or accepted/declined/ignored)")


def _propensities(table: pa.Table, name: str) -> np.ndarray:
    values = numeric_column(table.column(name), name)
    empty = np.flatnonzero(np.isnan(values)).tolist()
    if empty:
        raise LogError(f"{name}: {_rows(empty)} have no propensity")
    outside = np.flatnonzero(~((values > 0.0) & (values <= 1.0))).tolist()
    if outside:
        raise LogError(f"{name}: {_rows(outside)} outside (0, 1]")
    return values


def _time_column(table: pa.Table, columns: LogColumns) -> str | None:
    if columns.time is not None:
        if columns.time not in table.column_names:
            raise LogError(f"time column {columns.time!r} is missing; columns found: {', '.join(table.column_names)}")
        return columns.time
    taken = {columns.action, columns.outcome, columns.propensity}
    return next((n for n in TIME_COLUMNS if n in table.column_names and n not in taken), None)


def _times(table: pa.Table, name: str) -> np.ndarray:
    data = table.column(name)
    if pa.types.is_string(data.type) or pa.types.is_large_string(data.type):
        try:
            data = pc.cast(data, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise LogError(f"{name}: not a time (expected epoch seconds or ISO 8601 text)") from None
    values = numeric_column(data, name)
    empty = np.flatnonzero(np.isnan(values)).tolist()
    if empty:
        raise LogError(f"{name}: {_rows(empty)} have no time")
    return values


def numeric_column(data: pa.ChunkedArray, name: str) -> np.ndarray:
    """A numeric column as float64 (missing -> NaN); times as epoch seconds; text that reads as numbers too."""
    kind = data.type
    if pa.types.is_dictionary(kind):
        data, kind = data.cast(kind.value_type), kind.value_type
    if pa.types.is_null(kind):
        return np.full(len(data), np.nan)
    if pa.types.is_date(kind):
        data, kind = data.cast(pa.timestamp("s")), pa.timestamp("s")
    if pa.types.is_timestamp(kind):
        per_second = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[kind.unit]
        ticks = data.cast(pa.int64()).to_numpy(zero_copy_only=False)  # nulls -> NaN (a float array)
        return np.asarray(ticks, dtype=np.float64) / per_second
    if _is_numeric(kind):
        return data.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = data.to_pylist()
        out = np.empty(len(texts))
        bad = []
        for i, text in enumerate(texts):
            try:
                out[i] = float(text) if text not in (None, "") else math.nan
            except ValueError:
                bad.append(i)
        if bad:
            raise LogError(f"{name}: {_rows(bad)} are not numbers (e.g. {texts[bad[0]]!r})")
        return out
    raise LogError(f"{name}: type {kind} is not a number")


def _map_text(data: pa.ChunkedArray, encode: Any) -> np.ndarray:
    """encode(text or None) for each cell, computed once per distinct value."""
    return np.asarray(_map_values(data, encode), dtype=np.float64)


def _map_values(data: pa.ChunkedArray, convert: Any) -> list[Any]:
    text = data if pa.types.is_string(data.type) else data.cast(pa.string())
    encoded = pc.dictionary_encode(text).combine_chunks()
    dictionary = [convert(v) for v in encoded.dictionary.to_pylist()]
    missing = convert(None)
    return [missing if i is None else dictionary[i] for i in encoded.indices.to_pylist()]


def _clock(n: int, times: np.ndarray | None, now: float | None) -> np.ndarray:
    if times is not None:
        return times
    return np.full(n, time.time() if now is None else float(now))


def _rows(indices: Sequence[int]) -> str:
    """'rows 3, 17, 41 (3 rows)' for 0-based indices, listing at most ROWS_NAMED."""
    numbers = [str(i + 1) for i in indices[:ROWS_NAMED]]
    more = ", ..." if len(indices) > ROWS_NAMED else ""
    count = len(indices)
    return f"{'row' if count == 1 else 'rows'} {', '.join(numbers)}{more} ({count} {'row' if count == 1 else 'rows'})"
