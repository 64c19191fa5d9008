"""The OpenAPI document of the HTTP/JSON API, derived from the proto descriptors so it cannot drift from them.

Bodies are the proto messages in protobuf's JSON mapping: lowerCamelCase names (the proto names are accepted
too), enums by name, 64-bit integers as strings, fields at their default value left out of responses.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from decision.pb import decision_pb2 as pb

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32"},
    # The JSON mapping writes 64-bit integers as strings (JavaScript numbers lose precision past 2^53).
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "int64"},
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The same status and message a gRPC caller gets for the same request.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "status": {"type": "string", "description": "The gRPC status name, e.g. INVALID_ARGUMENT."},
                "message": {"type": "string", "description": "Names the field and what is accepted."},
                "field": {"type": "string", "description": "The field at fault, when there is one."},
            },
            "required": ["code", "status", "message"],
        }
    },
    "required": ["error"],
}


def _field_schema(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, schemas)}
    single = _single(field, schemas)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return {"$ref": f"#/components/schemas/{_message_schema(field.message_type, schemas)}"}
    return dict(_SCALARS[field.type])


def _message_schema(descriptor: Descriptor, schemas: dict[str, Any]) -> str:
    """Adds the message (and every message it uses) to ``schemas``; returns its schema name."""
    name = descriptor.name
    if name not in schemas:
        schemas[name] = {}  # placed first: a message that refers to itself stops here
        schemas[name] = {
            "type": "object",
            "description": f"{descriptor.full_name} in protobuf's JSON mapping.",
            "properties": {f.json_name: _field_schema(f, schemas) for f in descriptor.fields},
        }
    return name


def _operation(
    summary: str, description: str, request: Descriptor, response: Descriptor, schemas: dict[str, Any]
) -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }

    return {
        "summary": summary,
        "description": description,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{_message_schema(request, schemas)}"}}
            },
        },
        "responses": {
            "200": {
                "description": f"{response.full_name}, as gRPC answers it.",
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{_message_schema(response, schemas)}"}
                    }
                },
            },
            "400": error("INVALID_ARGUMENT: bad input; the message names the field and what is accepted."),
            "404": error("NOT_FOUND: e.g. an outcome for an unknown or expired decision."),
            "408": error("DEADLINE_EXCEEDED: the request did not arrive whole within NBA_HTTP_READ_TIMEOUT_S."),
            "409": error("FAILED_PRECONDITION: e.g. a change of an outcome already accepted or declined."),
            "413": error("The request body is larger than the service accepts."),
            "500": error("INTERNAL: an unexpected failure, logged with its traceback."),
            "503": error(
                "UNAVAILABLE: a dependency failed and nothing was stored, or too many HTTP connections are open; retry."
            ),
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``POST /v1/decide`` and ``POST /v1/outcomes``."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    service = pb.DESCRIPTOR.services_by_name["DecisionService"]
    decide = service.methods_by_name["Decide"]
    outcome = service.methods_by_name["RecordOutcome"]
    paths = {
        "/v1/decide": {
            "post": _operation(
                "Decide the next best actions for one customer at one touchpoint",
                "The JSON form of nba.v1.DecisionService/Decide: the same validation, the same decision. "
                "A retry with the same requestId returns the same decision. Without Redis the decision is made "
                "from the request alone and flagged degraded (still 200).",
                decide.input_type,
                decide.output_type,
                schemas,
            )
        },
        "/v1/outcomes": {
            "post": _operation(
                "Record what the customer did with an action of an earlier decision",
                "The JSON form of nba.v1.DecisionService/RecordOutcome: acknowledged only once stored "
                "(otherwise 503, retry); a retried outcome is stored once and answered with duplicate=true.",
                outcome.input_type,
                outcome.output_type,
                schemas,
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nba: next-best-action decisions (HTTP/JSON)",
            "version": version,
            "description": "The HTTP/JSON form of the gRPC API in proto/nba/v1/decision.proto, served by the same "
            "process with the same decision flow.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
