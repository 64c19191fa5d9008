"""How every command finds the running service: the service file.

``nba serve`` and ``nba demo`` write ``service.json`` into the data directory (NBA_DATA_DIR) while they serve: the
gRPC target, the HTTP address and the Redis URL they use (the embedded Redis's port is picked at start), and their
pid. ``nba decide``, ``nba outcome``, ``nba load``, ``nba incident``, ``nba ship-log`` and ``nba rules explain``
read it, so with the defaults no command needs ``--target`` or ``--redis-url``. What each takes, first found:

- the gRPC target: ``--target``, the running service's file, then NBA_HOST:NBA_PORT;
- the Redis URL: ``--redis-url``, NBA_REDIS_URL, then the running service's file.

A file whose process is gone (kill -9) is ignored; it is written whole (a temporary file renamed over it), so a
reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from decision.errors import InvalidArgument
from decision.settings import Settings

SERVICE_FILE = "service.json"
# What a client connects to when the service listens on every interface.
_ANY_HOST = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]"}


@dataclass(frozen=True)
class RunningService:
    """What a serving process tells the commands: where to reach it and the Redis it reads."""

    grpc_target: str
    http_url: str
    redis_url: str
    pid: int
    started_at: float


def service_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / SERVICE_FILE


@contextmanager
def announced(settings: Settings, grpc_target: str, http_url: str, redis_url: str) -> Iterator[RunningService]:
    """Write the service file for the block's duration; removed after it, unless another process wrote its own
    meanwhile (a second service on the same data directory: the last one started is the one found)."""
    running = RunningService(grpc_target, http_url, redis_url, os.getpid(), time.time())
    path = service_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{running.pid}")
    part.write_text(json.dumps(asdict(running)), encoding="utf-8")
    os.replace(part, path)
    try:
        yield running
    finally:
        found = _read(path)
        if found is not None and found.pid == running.pid:
            path.unlink(missing_ok=True)


def running_service(settings: Settings) -> RunningService | None:
    """The service serving on this data directory, None when there is none (no file, or its process is gone)."""
    found = _read(service_file(settings))
    if found is None or not _alive(found.pid):
        return None
    return found


def grpc_target(settings: Settings, flag: str | None) -> str:
    """Where a command reaches the service: ``flag``, the running service, else NBA_HOST:NBA_PORT."""
    if flag:
        return flag
    if (running := running_service(settings)) is not None:
        return running.grpc_target
    if settings.port == 0:
        raise InvalidArgument(
            f"--target: no running service found in {service_file(settings)} and NBA_PORT is 0 (a free port): "
            "start one (nba serve, make demo) or give HOST:PORT"
        )
    return f"{_ANY_HOST.get(settings.host, settings.host)}:{settings.port}"


def redis_url(settings: Settings, flag: str | None) -> str:
    """The Redis the service reads: ``flag``, NBA_REDIS_URL, else the running service's (its embedded Redis)."""
    if flag:
        return flag
    if settings.redis_url:
        return settings.redis_url
    if (running := running_service(settings)) is not None:
        return running.redis_url
    raise InvalidArgument(
        f"--redis-url: needed, as NBA_REDIS_URL is empty and no service is running on {settings.data_dir} "
        "(start one with nba serve or make demo, whose embedded Redis is then found)"
    )


def _read(path: Path) -> RunningService | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return RunningService(
            grpc_target=str(document["grpc_target"]),
            http_url=str(document["http_url"]),
            redis_url=str(document["redis_url"]),
            pid=int(document["pid"]),
            started_at=float(document["started_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or not one of ours: as if there were none


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (killed, not yet reaped by its parent) serves nothing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal said it is there
    return state != "Z"
