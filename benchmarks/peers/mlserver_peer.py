"""Seldon MLServer with its LightGBM runtime (``mlserver-lightgbm``) serving the demo model.

What a user assembles to score a customer's candidate actions with the same model file: a model directory
with ``model-settings.json`` (implementation ``mlserver_lightgbm.LightGBMModel``) and ``model.txt``, a
``settings.json`` for the server, ``mlserver start``, then one V2 ``ModelInfer`` call over gRPC per customer
with the candidate actions' rows as one FP64 tensor, the way its users call it. MLServer's own defaults are kept
(one inference worker process, LightGBM's default threads); only addresses and ports are set.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import lightgbm
import numpy as np

from benchmarks.peers import v2_protocol as v2
from benchmarks.peers.errors import WrongAnswer
from benchmarks.peers.process import ServerProcess
from benchmarks.peers.venv import DEFAULT_ROOT, PeerVenv
from decision.models import ModelCard
from decision.scoring import LightGBMScorer
from features.redis_server import free_port
from features.schema import FeatureSchema

MLSERVER_VERSION = "1.7.1"
# The runtime scores with the same LightGBM release as the project, so scores can be compared to 1e-9.
# uvloop 0.22+ raises from asyncio.get_event_loop() outside a running loop, which MLServer 1.7.1's inference
# pool workers call at start-up: with it every worker dies and the model never loads.
REQUIREMENTS = (
    f"mlserver=={MLSERVER_VERSION}",
    f"mlserver-lightgbm=={MLSERVER_VERSION}",
    f"lightgbm=={lightgbm.__version__}",
    "uvloop==0.21.0",
)
MODEL_NAME = "nba-demo"
IMPLEMENTATION = "mlserver_lightgbm.LightGBMModel"
INPUT_NAME = "input-0"
CANDIDATES = 8
"""Candidate actions scored per customer, as the decision flow scores after the rules."""
TOLERANCE = 1e-9


def model_settings(version: str) -> dict[str, Any]:
    """``model-settings.json``: the LightGBM runtime on ``model.txt`` next to it."""
    return {
        "name": MODEL_NAME,
        "implementation": IMPLEMENTATION,
        "parameters": {"uri": "./model.txt", "version": version},
    }


def server_settings(
    http_port: int, grpc_port: int, metrics_port: int, parallel_workers: int | None = None
) -> dict[str, Any]:
    """``settings.json``: loopback only, free ports (the defaults 8080/8081/8082 may be taken on a shared box).

    ``parallel_workers`` None keeps MLServer's default (one inference process behind the server's own); 0 runs
    the model in the server process.
    """
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    return settings


def candidate_actions(i: int, action_ids: Sequence[str], k: int = CANDIDATES) -> list[str]:
    """The ``k`` candidate actions of customer ``i``: a fixed sample of the catalogue per customer."""
    return random.Random(i).sample(list(action_ids), min(k, len(action_ids)))


def infer_request(rows: np.ndarray) -> Any:
    """One V2 ``ModelInferRequest``: the candidate rows as one FP64 tensor (NaN for missing values)."""
    request = v2.ModelInferRequest(model_name=MODEL_NAME)
    tensor = request.inputs.add(name=INPUT_NAME, datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    return request


def scores_of(response: Any, candidates: int) -> np.ndarray:
    """The scores in a ``ModelInferResponse``; WrongAnswer unless there is one per candidate row."""
    if len(response.outputs) != 1:
        raise WrongAnswer(f"expected one output tensor, got {len(response.outputs)}")
    output = response.outputs[0]
    if response.raw_output_contents:
        scores = np.frombuffer(response.raw_output_contents[0], dtype="<f8")
    else:
        scores = np.array(output.contents.fp64_contents or output.contents.fp32_contents, dtype=np.float64)
    if scores.size != candidates or int(np.prod(output.shape)) != candidates:
        raise WrongAnswer(f"expected {candidates} scores, got {scores.size} (shape {list(output.shape)})")
    return scores


class MLServerPeer:
    """MLServer serving the demo model: ``install()`` once, then ``with peer.start(): peer.call(i)``.

    ``call(i)`` scores customer ``i``'s candidate rows (modulo the population) in one gRPC ``ModelInfer``;
    it is thread-safe (one channel, shared). ``start`` checks MLServer's scores against the project's own
    LightGBM scorer for the same rows, to 1e-9, before yielding.
    """

    name = "mlserver"

    def __init__(
        self,
        population: Sequence[Mapping[str, str]],
        model_dir: Path,
        schema: FeatureSchema,
        action_ids: Sequence[str],
        root: Path = DEFAULT_ROOT,
        now: float | None = None,
        parallel_workers: int | None = None,
    ) -> None:
        self.population = population
        self.parallel_workers = parallel_workers
        self.model_dir = Path(model_dir)
        self.schema = schema
        self.venv = PeerVenv(self.name, REQUIREMENTS, Path(root))
        self.models = Path(root).resolve() / self.name / "models"
        self.timings: dict[str, float] = {}
        self.scorer = LightGBMScorer(self.model_dir, self.schema)
        now = time.time() if now is None else now
        self._values = [self.schema.parse(customer, now) for customer in population]
        self._actions = [candidate_actions(i, action_ids) for i in range(len(population))]
        self._rows = [self.scorer.rows(v, a) for v, a in zip(self._values, self._actions, strict=True)]
        self._channel: grpc.Channel | None = None
        self._infer: Any = None

    def install(self) -> float:
        """Install MLServer and its LightGBM runtime into their own venv unless there; seconds (0.0 if skipped)."""
        return self.venv.install()

    def rows(self, i: int) -> np.ndarray:
        """Customer ``i``'s candidate rows, exactly as the decision flow builds them for the model."""
        return self._rows[i % len(self._rows)]

    def write_models(self, http_port: int, grpc_port: int, metrics_port: int) -> Path:
        """The models directory ``mlserver start`` serves: settings.json and the model's own directory."""
        model = self.models / MODEL_NAME
        if self.models.exists():
            shutil.rmtree(self.models)
        model.mkdir(parents=True)
        shutil.copyfile(self.model_dir / "model.txt", model / "model.txt")
        version = ModelCard.read(self.model_dir).version
        (model / "model-settings.json").write_text(json.dumps(model_settings(version), indent=2) + "\n")
        settings = server_settings(http_port, grpc_port, metrics_port, self.parallel_workers)
        (self.models / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        return self.models

    @contextlib.contextmanager
    def start(self, timeout_s: float = 180.0) -> Iterator[MLServerPeer]:
        """Write the models directory, start ``mlserver start`` on free ports; stops it (and its workers) on exit."""
        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        self.write_models(http_port, grpc_port, metrics_port)
        command = [str(self.venv.executable("mlserver")), "start", str(self.models)]
        server = ServerProcess("mlserver start", command, self.models / "mlserver.log", cwd=self.models)
        ready_url = f"http://127.0.0.1:{http_port}/v2/models/{MODEL_NAME}/ready"
        try:
            server.start(lambda: _http_ok(ready_url), timeout_s=timeout_s)
            self.timings["startup_s"] = server.startup_seconds or 0.0
            self._channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            grpc.channel_ready_future(self._channel).result(timeout=30)
            self._infer = self._channel.unary_unary(
                v2.MODEL_INFER,
                request_serializer=v2.ModelInferRequest.SerializeToString,
                response_deserializer=v2.ModelInferResponse.FromString,
            )
            self.verify()
            yield self
        finally:
            if self._channel is not None:
                self._channel.close()
                self._channel = self._infer = None
            server.stop()

    def score(self, i: int) -> np.ndarray:
        """MLServer's scores for customer ``i``'s candidates, one per row."""
        rows = self.rows(i)
        response = self._infer(infer_request(rows), timeout=10)
        return scores_of(response, rows.shape[0])

    def call(self, i: int) -> None:
        """One ``ModelInfer`` for customer ``i``; raises WrongAnswer unless one score per candidate comes back."""
        self.score(i)

    def verify(self, customers: int = 50) -> None:
        """MLServer's scores equal the project's LightGBM scores for the same rows, to 1e-9."""
        for i in range(min(customers, len(self.population))):
            served = self.score(i)
            ours = self.scorer.score(self._values[i], self._actions[i])
            worst = float(np.max(np.abs(served - ours)))
            if not worst <= TOLERANCE:
                raise WrongAnswer(f"customer {i}: MLServer's scores differ from ours by {worst:.3g}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False
    except urllib.error.URLError as exc:
        raise OSError(str(exc)) from exc
