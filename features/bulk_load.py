"""Bulk load of customer profiles from CSV or Parquet into the online store (pipelined writes)."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from features.online_store import OnlineStore
from features.schema import FeatureSchema

ID_COLUMN = "customer_id"


class BulkLoadError(ValueError):
    """The file cannot be loaded; the message names the column or the row."""


def read_table(path: Path) -> pa.Table:
    """A CSV (every column read as text) or Parquet file as an Arrow table."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".csv", ".txt"):
        # Read every column as text: the store keeps text and the schema types it at decision time.
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        types = {name: pa.string() for name in header}
        return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
    raise BulkLoadError(f"{path}: unsupported file type {suffix!r}; accepted: .csv, .parquet")


def profiles_from_table(table: pa.Table, schema: FeatureSchema) -> Iterator[dict[str, str]]:
    """Rows as store-ready text mappings, keeping the id and the schema's features only."""
    if ID_COLUMN not in table.column_names:
        raise BulkLoadError(f"column {ID_COLUMN!r} is missing; columns found: {', '.join(table.column_names)}")
    columns = [c for c in table.column_names if c == ID_COLUMN or c in schema.by_name]
    for index, row in enumerate(table.select(columns).to_pylist()):
        customer_id = row.get(ID_COLUMN)
        if customer_id is None or str(customer_id).strip() == "":
            raise BulkLoadError(f"row {index + 1}: {ID_COLUMN} is empty")
        yield {name: _as_text(value) for name, value in row.items() if _present(value)}


def load_file(
    path: Path,
    store: OnlineStore,
    schema: FeatureSchema,
    written_at: float | None = None,
    progress: Callable[[Iterable[dict[str, str]], int], Iterable[dict[str, str]]] | None = None,
) -> int:
    """Load every row of a CSV/Parquet file; returns the number of profiles written. ``progress`` wraps the
    profiles (and is told how many there are) to show how far the load got."""
    table = read_table(Path(path))
    profiles: Iterable[dict[str, str]] = profiles_from_table(table, schema)
    if progress is not None:
        profiles = progress(profiles, table.num_rows)
    return store.write_profiles(profiles, written_at or time.time())


def _present(value: Any) -> bool:
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Mapping):
        raise BulkLoadError("nested values are not supported")
    return str(value)
