"""``nba describe`` and ``nba call``: a running service's API as its gRPC server reflection tells it, the way
grpcurl shows it, for machines without grpcurl (Debian 12 does not package it).

Nothing here knows the service's messages: every type is read from the server, so these commands work on any
gRPC server with reflection on (the health service too: ``nba call grpc.health.v1.Health/Check``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from decision.errors import InvalidArgument

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


class Reflection:
    """The types a server tells by reflection, over one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> list[str]:
        return sorted(self.database.get_services())

    def describe(self, symbol: str) -> str:
        """A service, a method (``Service/Method`` or ``Service.Method``), a message or an enum, as proto text."""
        if not symbol:
            return "\n".join(self.services())
        for find, show in (
            (self.pool.FindServiceByName, _service_text),
            (self._method, _method_text),
            (self.pool.FindMessageTypeByName, _message_text),
            (self.pool.FindEnumTypeByName, _enum_text),
        ):
            try:
                found = find(symbol.lstrip("."))
            except (KeyError, grpc.RpcError):
                continue
            return show(found)  # type: ignore[operator]
        raise InvalidArgument(
            f"symbol: {symbol!r} is not a service, method, message or enum this server knows; "
            f"its services: {', '.join(self.services())}"
        )

    def call(self, method_name: str, request_json: str, timeout_s: float) -> str:
        """Call ``method_name`` (unary) with the request written as JSON; the reply as JSON."""
        try:
            method = self._method(method_name)
        except (KeyError, grpc.RpcError):
            raise InvalidArgument(
                f"method: {method_name!r} is not a method of this server (Service/Method, e.g. "
                f"nba.v1.DecisionService/Decide); its services: {', '.join(self.services())}"
            ) from None
        if method.client_streaming or method.server_streaming:
            raise InvalidArgument(f"method: {method.full_name} streams; nba call makes unary calls only")
        request_class = message_factory.GetMessageClass(method.input_type)
        reply_class = message_factory.GetMessageClass(method.output_type)
        try:
            request = json_format.Parse(request_json or "{}", request_class())
        except json_format.ParseError as error:
            raise InvalidArgument(f"request: not a {method.input_type.full_name} in JSON: {error}") from None
        stub = self.channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=reply_class.FromString,
        )
        reply = stub(request, timeout=timeout_s)
        return json_format.MessageToJson(reply, preserving_proto_field_name=True, ensure_ascii=False)

    def _method(self, name: str) -> MethodDescriptor:
        service, sep, method = name.replace("/", ".").rpartition(".")
        if not sep:
            raise KeyError(name)
        found = self.pool.FindServiceByName(service).methods_by_name.get(method)
        if found is None:
            raise KeyError(name)
        return found


@contextmanager
def reflecting(target: str) -> Iterator[Reflection]:
    with grpc.insecure_channel(target) as channel:
        yield Reflection(channel)


def _service_text(service: ServiceDescriptor) -> str:
    lines = [f"service {service.full_name} {{"]
    lines += [
        f"  rpc {m.name}({_streamed(m.client_streaming)}{m.input_type.full_name}) returns "
        f"({_streamed(m.server_streaming)}{m.output_type.full_name});"
        for m in service.methods
    ]
    return "\n".join([*lines, "}"])


def _method_text(method: MethodDescriptor) -> str:
    return "\n\n".join(
        [
            f"rpc {method.containing_service.full_name}.{method.name}({method.input_type.full_name}) "
            f"returns ({method.output_type.full_name});",
            _message_text(method.input_type),
            _message_text(method.output_type),
        ]
    )


def _message_text(message: Descriptor) -> str:
    lines = [f"message {message.full_name} {{"]
    for field in message.fields:
        lines.append(f"  {_field_type(field)} {field.name} = {field.number};")
    return "\n".join([*lines, "}"])


def _enum_text(enum: EnumDescriptor) -> str:
    lines = [f"enum {enum.full_name} {{"] + [f"  {v.name} = {v.number};" for v in enum.values]
    return "\n".join([*lines, "}"])


def _field_type(field: FieldDescriptor) -> str:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map<{_type_name(key)}, {_type_name(value)}>"
    return f"repeated {_type_name(field)}" if field.is_repeated else _type_name(field)


def _type_name(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return _SCALARS.get(field.type, "?")


def _streamed(streaming: bool) -> str:
    return "stream " if streaming else ""


def request_text(raw: str) -> str:
    """The request JSON as given: ``-`` reads nothing here (the caller reads stdin); checks it is one object."""
    try:
        document = json.loads(raw or "{}")
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"request: not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(document, dict):
        raise InvalidArgument('request: must be a JSON object, e.g. \'{"customer_id": "demo-ife-gold"}\'')
    return raw or "{}"
