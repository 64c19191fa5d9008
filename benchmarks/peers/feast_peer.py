"""Feast's Python feature server (``feast serve``) with a Redis online store, serving the demo customers' features.

What a Feast user assembles to get what our service reads in its first step: a feature repo with an entity
``customer_id`` and one feature view holding every schema feature, a Parquet offline source written from the
demo population, ``feast apply`` and ``feast materialize`` into Redis, then ``feast serve`` answering
``POST /get-online-features`` over HTTP/JSON with a keep-alive connection, the way its users call it.

``feast serve``'s defaults are kept: one gunicorn worker, recycled every ~1,000 requests (``--max-requests``),
so a long run includes the worker restarts a default deployment has (a new worker takes seconds to boot here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import math
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.peers.errors import WrongAnswer
from benchmarks.peers.process import ServerProcess
from benchmarks.peers.venv import DEFAULT_ROOT, PeerVenv
from features.redis_server import free_port
from features.schema import Feature, FeatureSchema

FEAST_VERSION = "0.67.0"
REQUIREMENTS = (f"feast[redis]=={FEAST_VERSION}",)
PROJECT = "nba_bench"
ENTITY = "customer"
JOIN_KEY = "customer_id"
FEATURE_VIEW = "customer_profile"
TIMESTAMP_COLUMN = "event_timestamp"
ONLINE_FEATURES_PATH = "/get-online-features"

# Feast's type for each schema type; timestamps stay epoch seconds, as our Redis hash holds them.
FEAST_TYPES = {
    "number": "Float64",
    "integer": "Int64",
    "boolean": "Bool",
    "category": "String",
    "timestamp": "Float64",
    "text": "String",
}
ARROW_TYPES = {"Float64": pa.float64(), "Int64": pa.int64(), "Bool": pa.bool_(), "String": pa.string()}
_TRUE = {"1", "true", "yes", "y", "t"}


def feast_type(feature: Feature) -> str:
    return FEAST_TYPES[feature.type]


def typed_value(feature: Feature, raw: str | None) -> Any:
    """A stored string as the typed value the offline source holds; None when empty or absent."""
    if raw is None or raw == "":
        return None if feature.type not in ("category", "text") else raw
    kind = feast_type(feature)
    if kind == "Float64":
        return float(raw)
    if kind == "Int64":
        return int(float(raw))
    if kind == "Bool":
        return raw.strip().lower() in _TRUE
    return raw


def feature_store_yaml(redis_host: str, redis_port: int, registry: Path) -> str:
    """``feature_store.yaml``: the local provider, a file registry, Redis as the online store."""
    return (
        f"project: {PROJECT}\n"
        f"provider: local\n"
        f"registry: {registry}\n"
        f"online_store:\n"
        f"  type: redis\n"
        f'  connection_string: "{redis_host}:{redis_port},db=0"\n'
        f"offline_store:\n"
        f"  type: file\n"
        f"entity_key_serialization_version: 3\n"
    )


def definitions_source(schema: FeatureSchema, parquet: Path) -> str:
    """The feature repo's Python definitions: entity ``customer_id`` and one view with every schema feature."""
    fields = "\n".join(f'        Field(name="{f.name}", dtype={feast_type(f)}),' for f in schema.features)
    types = ", ".join(sorted(set(FEAST_TYPES.values())))
    return f'''"""Feature definitions for the peer benchmark, generated from features/schema.yaml."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import {types}

{ENTITY} = Entity(name="{ENTITY}", join_keys=["{JOIN_KEY}"], value_type=ValueType.STRING)

{FEATURE_VIEW}_source = FileSource(
    name="{FEATURE_VIEW}_source",
    path="{parquet}",
    timestamp_field="{TIMESTAMP_COLUMN}",
)

{FEATURE_VIEW} = FeatureView(
    name="{FEATURE_VIEW}",
    entities=[{ENTITY}],
    ttl=timedelta(days=3650),
    schema=[
{fields}
    ],
    online=True,
    source={FEATURE_VIEW}_source,
)
'''


def offline_table(population: Sequence[Mapping[str, str]], schema: FeatureSchema, written_at: float) -> pa.Table:
    """The offline source: one row per customer, typed columns, the profile's write time as event time."""
    event_time = dt.datetime.fromtimestamp(written_at, dt.UTC)
    columns: dict[str, pa.Array] = {
        JOIN_KEY: pa.array([p[JOIN_KEY] for p in population], pa.string()),
        TIMESTAMP_COLUMN: pa.array([event_time] * len(population), pa.timestamp("us", tz="UTC")),
    }
    for feature in schema.features:
        values = [typed_value(feature, p.get(feature.name)) for p in population]
        columns[feature.name] = pa.array(values, ARROW_TYPES[feast_type(feature)])
    return pa.table(columns)


def request_body(customer_id: str, schema: FeatureSchema) -> bytes:
    """One entity's every feature, as Feast's feature server takes it."""
    features = [f"{FEATURE_VIEW}:{f.name}" for f in schema.features]
    return json.dumps({"features": features, "entities": {JOIN_KEY: [customer_id]}}).encode()


def check_answer(answer: Mapping[str, Any], customer_id: str, schema: FeatureSchema) -> dict[str, Any]:
    """The features of ``customer_id`` from a ``/get-online-features`` answer; WrongAnswer if it is not that."""
    try:
        names = list(answer["metadata"]["feature_names"])
        results = answer["results"]
    except (KeyError, TypeError) as exc:
        raise WrongAnswer(f"not a get-online-features answer: {str(answer)[:300]}") from exc
    expected = {JOIN_KEY, *(f.name for f in schema.features)}
    if set(names) != expected or len(results) != len(names):
        raise WrongAnswer(f"features {sorted(set(names) ^ expected)} differ from the schema's")
    values = {name: result["values"][0] for name, result in zip(names, results, strict=True)}
    if values[JOIN_KEY] != customer_id:
        raise WrongAnswer(f"asked for {customer_id}, answered {values[JOIN_KEY]}")
    missing = [n for n, r in zip(names, results, strict=True) if r["statuses"][0] == "NOT_FOUND"]
    if missing:
        raise WrongAnswer(f"{customer_id}: {len(missing)} features not found, e.g. {missing[:3]}")
    return values


class FeastPeer:
    """Feast's feature server over Redis, for the demo population.

    ``install()`` once (its own venv under ``root``), then ``with peer.start(redis_url): peer.call(i)`` for
    customer ``i`` (modulo the population). ``call`` is thread-safe: one keep-alive connection per thread.
    """

    name = "feast"

    def __init__(
        self,
        population: Sequence[Mapping[str, str]],
        schema: FeatureSchema,
        root: Path = DEFAULT_ROOT,
    ) -> None:
        self.population = population
        self.schema = schema
        self.venv = PeerVenv(self.name, REQUIREMENTS, Path(root))
        self.repo = Path(root).resolve() / self.name / "repo"
        self.timings: dict[str, float] = {}
        self._port = 0
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._connections_lock = threading.Lock()
        self._bodies = [request_body(p[JOIN_KEY], self.schema) for p in population]

    def install(self) -> float:
        """Install Feast into its own venv unless already there; seconds spent (0.0 when skipped)."""
        return self.venv.install()

    def write_repo(self, redis_url: str, written_at: float) -> Path:
        """The feature repo: feature_store.yaml, the definitions and the Parquet source. Returns its directory."""
        url = urlsplit(redis_url)
        data = self.repo / "data"
        data.mkdir(parents=True, exist_ok=True)
        parquet = data / "customers.parquet"
        pq.write_table(offline_table(self.population, self.schema, written_at), parquet)
        (self.repo / "feature_store.yaml").write_text(
            feature_store_yaml(url.hostname or "127.0.0.1", url.port or 6379, data / "registry.db")
        )
        (self.repo / "features.py").write_text(definitions_source(self.schema, parquet))
        return self.repo

    def _feast(self, *args: str) -> list[str]:
        return [str(self.venv.executable("feast")), "--chdir", str(self.repo), *args]

    def _env(self) -> dict[str, str]:
        # No usage telemetry: the benchmark machine has no route out and must not wait for one.
        return {**os.environ, "FEAST_USAGE": "False", "PYTHONUNBUFFERED": "1"}

    def _run(self, step: str, *args: str) -> None:
        started = time.perf_counter()
        result = subprocess.run(self._feast(*args), env=self._env(), capture_output=True, text=True)
        self.timings[f"{step}_s"] = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"feast {step} exited {result.returncode}:\n{result.stderr[-3000:]}")

    def serve_command(self, port: int) -> list[str]:
        return self._feast("serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log")

    @contextlib.contextmanager
    def start(self, redis_url: str, timeout_s: float = 300.0) -> Iterator[FeastPeer]:
        """Write the repo, apply, materialize into ``redis_url``, serve; stops the server on exit."""
        written_at = time.time()
        self.write_repo(redis_url, written_at)
        self._run("apply", "apply")
        start = dt.datetime.fromtimestamp(written_at - 86_400, dt.UTC).isoformat(timespec="seconds")
        end = dt.datetime.fromtimestamp(written_at + 60, dt.UTC).isoformat(timespec="seconds")
        self._run("materialize", "materialize", start, end)
        self._port = free_port()
        server = ServerProcess("feast serve", self.serve_command(self._port), self.repo / "serve.log", env=self._env())
        try:
            server.start(self._health, timeout_s=timeout_s)
            self.timings["startup_s"] = server.startup_seconds or 0.0
            self.verify()
            yield self
        finally:
            server.stop()
            self._close_connections()

    def _health(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=2)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        finally:
            connection.close()

    def fetch(self, i: int) -> dict[str, Any]:
        """Customer ``i``'s features from the server, checked to be that customer's and every schema feature."""
        customer = self.population[i % len(self.population)]
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=10)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        try:
            connection.request(
                "POST", ONLINE_FEATURES_PATH, self._bodies[i % len(self._bodies)], {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # the next call on this thread connects again
            self._local.connection = None
            raise
        if response.status != 200:
            raise WrongAnswer(f"HTTP {response.status}: {body[:300]!r}")
        return check_answer(json.loads(body), customer[JOIN_KEY], self.schema)

    def call(self, i: int) -> None:
        """One request for customer ``i``; raises WrongAnswer unless it holds that customer's features."""
        self.fetch(i)

    def verify(self, customers: int = 50) -> None:
        """The served values equal the population's, feature by feature, for the first ``customers``."""
        for i in range(min(customers, len(self.population))):
            served = self.fetch(i)
            for feature in self.schema.features:
                want = typed_value(feature, self.population[i].get(feature.name))
                got = served[feature.name]
                same = (
                    math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
                    if isinstance(want, float) and got is not None
                    else got == want
                )
                if not same:
                    raise WrongAnswer(f"{self.population[i][JOIN_KEY]}.{feature.name}: served {got!r}, want {want!r}")

    def _close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
