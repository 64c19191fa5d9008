"""The HTTP/JSON front end, beside gRPC in the same process, over the same ``DecisionApi`` and decision flow.

``POST /v1/decide`` and ``POST /v1/outcomes`` take and return the proto messages in protobuf's JSON mapping.
A body is parsed into the very proto message a gRPC caller sends (unknown fields ignored, as gRPC's parser does),
then validated and decided by the same code; a DecisionError's gRPC status becomes the HTTP status and the body
carries the same message, naming the field. ``GET /openapi.json`` describes both. The teller screen
(``decision.api.teller``) is served by the same app.

uvicorn serves the Starlette app on a thread of its own; the flow runs on Starlette's worker threads, since
it blocks on Redis.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import uvicorn
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from decision import validation
from decision.api.grpc_server import MAX_MESSAGE_BYTES, DecisionApi
from decision.api.http_limits import ConnectionBudget, limited_protocol
from decision.api.openapi import openapi_document
from decision.errors import DecisionError, InvalidArgument
from decision.pb import decision_pb2 as pb

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Messages name their field first: "customer_id: ...", "context[flight]: ...", "context (a key): ...".
_FIELD = re.compile(r"([a-z_]+)(?:\[[^\]]*\])?(?: \(a key\))?: ")
_PARSE_ERROR = re.compile(r"Failed to parse (\S+) field: ")
_EXPECTED = {
    FieldDescriptor.TYPE_STRING: "a string",
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_DOUBLE: "a number",
    FieldDescriptor.TYPE_FLOAT: "a number",
    FieldDescriptor.TYPE_INT32: "a whole number between -2147483648 and 2147483647",
    FieldDescriptor.TYPE_INT64: "a whole number",
    FieldDescriptor.TYPE_MESSAGE: "an object",
}


class RequestTooLarge(DecisionError):
    """A body larger than a gRPC message may be; gRPC's status for that is RESOURCE_EXHAUSTED."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


def error_response(status: grpc.StatusCode, message: str) -> JSONResponse:
    """The HTTP form of a gRPC status: ``{"error": {"code", "status", "message", "field"}}``."""
    # A message quoting unreadable input may hold lone surrogates, which no UTF-8 body can carry: escape them.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    error: dict[str, Any] = {"code": HTTP_STATUS.get(status, 500), "status": status.name, "message": message}
    if named := _FIELD.match(message):
        error["field"] = named.group(1)
    return JSONResponse({"error": error}, status_code=error["code"])


def message_from_json(body: bytes, message_type: type[M]) -> M:
    """The proto message of a JSON body. Whatever cannot be read is refused with the field named, as gRPC does."""
    descriptor = message_type.DESCRIPTOR
    # surrogateescape keeps invalid UTF-8 readable, so the field holding it can be named below.
    text = body.decode("utf-8", errors="surrogateescape")
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidArgument(_too_deep(text, descriptor)) from None
    except ValueError as exc:
        raise InvalidArgument(f"the request body is not valid JSON: {_cut(str(exc))}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"the request body must be a JSON object (an {descriptor.full_name})")
    if unreadable_text := _invalid_text(data, descriptor):
        raise InvalidArgument(unreadable_text)
    for field in descriptor.fields:
        value = data.get(field.json_name, data.get(field.name))
        if field.enum_type is not None and isinstance(value, str):
            validation.enum_name(field.name, value, [v.name for v in field.enum_type.values])
    try:
        return json_format.ParseDict(data, message_type(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidArgument(_unreadable(exc, descriptor, data)) from None
    except RecursionError:  # a value nested deep, but not so deep that the JSON reader refused it
        raise InvalidArgument(_too_deep(text, descriptor)) from None


def _field(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    """The field a JSON key names (its JSON or its proto name); a key that is not UTF-8 names none."""
    if not _is_utf8(key):
        return None  # protobuf's lookups raise SystemError on lone surrogates
    return descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)


def _invalid_text(data: dict[str, Any], descriptor: Descriptor) -> str | None:
    """Why the text of a key or string field is not UTF-8 (``customer_id``, ``context[flight]``), else None."""
    for key, value in data.items():
        if not _is_utf8(key):
            return f"the request body: key {validation.shown(key)} must be valid UTF-8 text"
        field = _field(descriptor, key)
        if field is None:
            continue
        if isinstance(value, str) and not _is_utf8(value):
            return f"{field.name}: must be valid UTF-8 text"
        if not isinstance(value, dict) or not _is_map(field):
            continue
        for entry, text in value.items():
            if not _is_utf8(entry):
                return f"{field.name} (a key): must be valid UTF-8 text"  # as gRPC names it
            if isinstance(text, str) and not _is_utf8(text):
                return f"{validation.entry_name(field.name, entry)}: must be valid UTF-8 text"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


# A JSON string (escapes included) or a bracket: enough to follow the nesting without parsing the values.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
MAX_JSON_DEPTH = 64


def _too_deep(text: str, descriptor: Descriptor) -> str:
    """The refusal of a body nested deeper than the JSON reader goes, naming the top-level field that does it."""
    depth, last_string, key = 0, None, None
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket[0] == '"':
            last_string = bracket
        elif bracket in "[{":
            if depth == 1:
                key = last_string  # a value inside the top-level object follows its key
            depth += 1
            if depth > MAX_JSON_DEPTH:
                break
        else:
            depth -= 1
    deep = f"nests arrays or objects more than {MAX_JSON_DEPTH} levels deep"
    name = _json_string(key) if key is not None else None
    field = _field(descriptor, name) if name is not None else None
    if field is not None:
        return f"{field.name}: must be {_expected(field)}; got a value that {deep}"
    where = f" (under the key {validation.shown(name)})" if name is not None else ""
    return f"the request body {deep}{where}"


def _json_string(token: str) -> str | None:
    try:
        value = json.loads(token)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _expected(field: FieldDescriptor) -> str:
    if _is_map(field):
        return "an object of text values"
    if field.is_repeated:
        return "a list"
    return _EXPECTED.get(field.type, "a value of its type")


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _unreadable(exc: json_format.ParseError, descriptor: Descriptor, data: dict[str, Any]) -> str:
    found = _PARSE_ERROR.match(str(exc))
    field = _field(descriptor, found.group(1)) if found else None
    if field is None:
        return f"the request is not a valid {descriptor.full_name}: {_cut(str(exc))}"
    value = data.get(field.json_name, data.get(field.name))
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        shown = "a value that cannot be shown"
    return f"{field.name}: must be {_expected(field)}; got {_cut(shown, 40)}"


class HttpApi:
    """The two JSON endpoints over a DecisionApi, with a default deadline for decisions (HTTP callers have none)."""

    def __init__(self, api: DecisionApi, deadline_s: float) -> None:
        self.api = api
        self.deadline_s = deadline_s

    async def decide(self, request: Request) -> Response:
        deadline = time.monotonic() + self.deadline_s
        return await self._call(request, pb.DecideRequest, lambda m: self.api.decide(m, deadline))

    async def record_outcome(self, request: Request) -> Response:
        return await self._call(request, pb.RecordOutcomeRequest, self.api.record_outcome)

    async def _call(self, request: Request, message_type: type[M], method: Callable[[M], Message]) -> Response:
        try:
            message = message_from_json(await _body(request), message_type)
            reply = await run_in_threadpool(method, message)
        except DecisionError as exc:
            return error_response(exc.status, exc.message)
        except ClientDisconnect:  # gone (or timed out, see decision.api.http_limits) before its body was in
            return Response(status_code=400)  # nobody reads it
        except Exception:
            name = message_type.DESCRIPTOR.name.removesuffix("Request")
            log.exception("HTTP %s failed", name)
            return error_response(grpc.StatusCode.INTERNAL, f"{name} failed unexpectedly; see the server log")
        return JSONResponse(json_format.MessageToDict(reply))


async def _body(request: Request) -> bytes:
    # An oversized body is still read to its end (and dropped), so the client gets the 413 rather than a reset.
    body = bytearray()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_MESSAGE_BYTES:
            body += chunk
    if size > MAX_MESSAGE_BYTES:
        raise RequestTooLarge(f"the request body is larger than {MAX_MESSAGE_BYTES} bytes")
    return bytes(body)


def create_app(api: DecisionApi, deadline_s: float, pages: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app: the JSON API, its OpenAPI document, and ``pages`` (the teller screen)."""
    endpoints = HttpApi(api, deadline_s)
    document = openapi_document(importlib.metadata.version("nba"))

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def no_such_route(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = grpc.StatusCode.NOT_FOUND if exc.status_code == 404 else grpc.StatusCode.UNIMPLEMENTED
        message = f"{request.method} {request.url.path}: {exc.detail}; see /openapi.json"
        return JSONResponse(
            {"error": {"code": exc.status_code, "status": status.name, "message": message}},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    routes = [
        Route("/v1/decide", endpoints.decide, methods=["POST"]),
        Route("/v1/outcomes", endpoints.record_outcome, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *pages,
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: no_such_route})


class HttpServer:
    """uvicorn serving an ASGI app on its own thread; the socket is bound at construction, so the port is known.

    At most ``budget.max_connections`` connections are served at once, and a request must arrive whole within
    ``read_timeout_s`` (``decision.api.http_limits``). ``reuse_port`` lets several processes bind the same port
    (``nba serve --workers N``)."""

    def __init__(
        self,
        app: Starlette,
        host: str,
        port: int,
        budget: ConnectionBudget,
        read_timeout_s: float,
        reuse_port: bool = False,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto=IPPROTO_TCP, not create_server's 0: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # several server processes on one port: the kernel spreads the connections
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self.socket.bind((host, port))
        except OSError:
            self.socket.close()
            raise
        self.host = host
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            http=limited_protocol(budget.max_connections, read_timeout_s),
            backlog=budget.backlog,
            ws="none",  # no WebSocket routes; an upgrade would also take the connection from the read timeout
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="http", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.socket.close()
                raise OSError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)

    def stop(self, grace_s: float = 2.0) -> None:
        self.server.should_exit = True
        self.thread.join(grace_s + 1.0)
        self.socket.close()
