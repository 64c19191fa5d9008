"""The shipped log: the decisions, outcomes and follow-ups streams as Parquet files under a log directory, as the
log shipper (``decision.decision_log.shipper``) writes them and the readers (``nba export-log --log-dir``,
``nba train --log DIR``) read them.

Layout, under the log directory (``NBA_LOG_DIR``: a local path, or any URL pyarrow's filesystems take, such as
``s3://bucket/nba-log`` or ``gs://bucket/nba-log`` when pyarrow was built with them)::

    decisions/date=2026-12-03/part-1764720000000-0-1764720059999-3.parquet
    outcomes/date=2026-12-03/part-...parquet
    follow-ups/date=2026-12-03/part-...parquet

One file per shipped batch and UTC day (of the entry's stream id), named by the first and the last stream id it
holds, zstd compressed; columns: ``stream_id`` and the entry's fields (a follow-up's JSON spread into columns).
``pyarrow.dataset.dataset(f"{log_dir}/decisions", partitioning="hive")`` reads a stream as one table (with a
``date`` column from the directory names).

A file is written under a temporary name starting with ``.`` (which pyarrow.dataset ignores) and renamed into
place, so a reader never sees half a file (on a local filesystem the rename is atomic; on an object store the
object appears whole). The largest last id among a stream's files is its watermark: everything up to it is
shipped. A batch that spans midnight is two files, renamed in id order, so the files always hold a prefix of the
stream whatever moment the shipper is killed at.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from decision.decision_log.records import unpack

DECISIONS, OUTCOMES, FOLLOW_UPS = "decisions", "outcomes", "follow-ups"
KINDS = (DECISIONS, OUTCOMES, FOLLOW_UPS)
COMPRESSION = "zstd"
TEMPORARY_PREFIX = ".tmp-"
_PART = re.compile(r"^part-(\d+-\d+)-(\d+-\d+)\.parquet$")

# The columns each kind always has (records.py writes them), so every file of a stream has the same schema and
# pyarrow.dataset reads them as one; a field not named here becomes a text column after these.
_TEXT = pa.string()
COLUMNS: Mapping[str, Sequence[tuple[str, pa.DataType]]] = {
    DECISIONS: [
        ("stream_id", _TEXT),
        ("decision_id", _TEXT),
        ("request_id", _TEXT),
        ("customer_id", _TEXT),
        ("touchpoint", _TEXT),
        ("model_version", _TEXT),
        ("rules_version", _TEXT),
        ("catalogue_version", _TEXT),
        ("decided_at_ms", pa.int64()),
        ("degraded", _TEXT),
        ("actions", _TEXT),
        ("decision", _TEXT),
        ("inputs", _TEXT),
    ],
    OUTCOMES: [
        ("stream_id", _TEXT),
        ("decision_id", _TEXT),
        ("action_id", _TEXT),
        ("outcome", _TEXT),
        ("customer_id", _TEXT),
        ("touchpoint", _TEXT),
        ("model_version", _TEXT),
        ("rules_version", _TEXT),
        ("propensity", pa.float64()),
        ("at", pa.float64()),
        ("supersedes", _TEXT),
    ],
    FOLLOW_UPS: [
        ("stream_id", _TEXT),
        ("decision_id", _TEXT),
        ("kind", _TEXT),
        ("action_id", _TEXT),
        ("language", _TEXT),
        ("text", _TEXT),
        ("channel", _TEXT),
    ],
}


class LogDirectoryError(OSError):
    """The log directory cannot be used; the message names the setting (``NBA_LOG_DIR``) and the cause."""


@dataclass(frozen=True, order=True)
class StreamId:
    """A Redis stream entry id, ``<ms>-<seq>``, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str | bytes) -> StreamId:
        value = text.decode() if isinstance(text, bytes) else text
        ms, _, seq = value.partition("-")
        return cls(int(ms), int(seq or 0))

    def following(self) -> StreamId:
        """The smallest id after this one (XTRIM MINID of it keeps nothing up to this one)."""
        return StreamId(self.ms, self.seq + 1)

    @property
    def day(self) -> str:
        return dt.datetime.fromtimestamp(self.ms / 1000, dt.UTC).strftime("%Y-%m-%d")

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


Entry = tuple[StreamId, Mapping[str, Any]]
"""A stream entry: its id and its fields (names and values as text or bytes, as Redis returns them)."""


def open_filesystem(url: str | Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a log directory: a local path (relative to the working directory) or a
    URL (``file://``, ``s3://``, ``gs://``, ``hdfs://``, as pyarrow understands them)."""
    text = str(url)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).resolve())
    try:
        return pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise LogDirectoryError(f"NBA_LOG_DIR={text}: not a filesystem pyarrow can open: {exc}") from exc


class LogDirectory:
    """The shipped files of the three streams under one log directory; see the module docstring."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        self.fs, self.root = open_filesystem(url)

    def check_writable(self) -> None:
        """Create the streams' directories and write and remove a probe file; ``LogDirectoryError`` naming the
        setting when that fails, so a wrong directory is found at start rather than at the first batch."""
        probe = f"{self.root}/{TEMPORARY_PREFIX}probe-{uuid.uuid4().hex}"
        try:
            for kind in KINDS:
                self.fs.create_dir(f"{self.root}/{kind}", recursive=True)
            with self.fs.open_output_stream(probe) as out:
                out.write(b"probe")
            self.fs.delete_file(probe)
        except (OSError, pa.ArrowException) as exc:
            raise LogDirectoryError(f"NBA_LOG_DIR={self.url}: not writable: {exc}") from exc

    def files(self, kind: str) -> list[tuple[StreamId, StreamId, str]]:
        """(first id, last id, path) of each shipped file of ``kind``, oldest first."""
        found = []
        for info in self._listing(kind):
            match = _PART.match(info.base_name)
            if info.type == pafs.FileType.File and match:
                found.append((StreamId.parse(match[1]), StreamId.parse(match[2]), info.path))
        return sorted(found)

    def watermark(self, kind: str) -> StreamId | None:
        """The last stream id shipped of ``kind``: the largest last id of its files; None when none is."""
        files = self.files(kind)
        return max(last for _, last, _ in files) if files else None

    def remove_temporaries(self, kind: str) -> int:
        """Delete the temporary files a shipper killed before its rename left (their batch ships again)."""
        left = [i.path for i in self._listing(kind) if i.base_name.startswith(TEMPORARY_PREFIX)]
        for path in left:
            self.fs.delete_file(path)
        return len(left)

    def write(self, kind: str, entries: Sequence[Entry], before_rename: Callable[[], None] | None = None) -> list[str]:
        """Write a batch (entries in id order) as one file per UTC day, each renamed into place in id order;
        ``before_rename()``, when given, runs once every file is written and none renamed. Returns the paths."""
        staged = []
        for day, group in groupby(entries, key=lambda entry: entry[0].day):
            day_entries = list(group)
            name = f"part-{day_entries[0][0]}-{day_entries[-1][0]}.parquet"
            directory = f"{self.root}/{kind}/date={day}"
            temporary = f"{directory}/{TEMPORARY_PREFIX}{uuid.uuid4().hex}-{name}"
            self.fs.create_dir(directory, recursive=True)
            pq.write_table(entry_table(kind, day_entries), temporary, filesystem=self.fs, compression=COMPRESSION)
            staged.append((temporary, f"{directory}/{name}"))
        if before_rename is not None:
            before_rename()
        for temporary, final in staged:
            self.fs.move(temporary, final)
        return [final for _, final in staged]

    def read(self, kind: str, after: StreamId | None = None) -> Iterator[dict[str, Any]]:
        """Every shipped entry of ``kind`` (after ``after`` when given), oldest first, as a dict of its columns;
        one file in memory at a time."""
        for _first, last, path in self.files(kind):
            if after is not None and last <= after:
                continue
            table = pq.read_table(path, filesystem=self.fs)
            for row in table.to_pylist():
                if after is None or StreamId.parse(row["stream_id"]) > after:
                    yield row

    def _listing(self, kind: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(f"{self.root}/{kind}", recursive=True, allow_not_found=True)
        try:
            return list(self.fs.get_file_info(selector))
        except (OSError, pa.ArrowException) as exc:
            raise LogDirectoryError(f"NBA_LOG_DIR={self.url}: cannot list {kind}: {exc}") from exc


def entry_fields(kind: str, fields: Mapping[Any, Any]) -> dict[str, Any]:
    """A stream entry's fields as text by name; a follow-up's JSON spread into its fields; a decision and its
    inputs as plain JSON (packed in Redis: records.pack), which the files' zstd compresses better across rows."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    if kind == DECISIONS:
        for name in ("decision", "inputs"):
            if name in text:
                text[name] = unpack(text[name]).decode()
    if kind == FOLLOW_UPS and "follow_up" in text:
        return {k: None if v is None else str(v) for k, v in orjson.loads(text.pop("follow_up")).items()} | text
    return text


def entry_table(kind: str, entries: Sequence[Entry]) -> pa.Table:
    """The Arrow table of a batch: the kind's columns (see COLUMNS), then any other field as text."""
    rows = [{"stream_id": str(entry_id), **entry_fields(kind, fields)} for entry_id, fields in entries]
    known = dict(COLUMNS[kind])
    extra = sorted({name for row in rows for name in row} - known.keys())
    schema = pa.schema([*COLUMNS[kind], *((name, _TEXT) for name in extra)])
    columns = {name: [_typed(row.get(name), schema.field(name).type) for row in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


def _typed(value: str | None, kind: pa.DataType) -> Any:
    if value is None or value == "" and not pa.types.is_string(kind):
        return None
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_floating(kind):
        return float(value)
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
