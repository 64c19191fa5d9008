"""Finding which field of an unparseable request is at fault, so the error can name it.

protobuf refuses a message with a non-UTF-8 string anywhere in it and does not say where. Parsing the same bytes
as an empty message keeps every field as an unknown field, which we walk with the real message's descriptor.
"""

from __future__ import annotations

from google.protobuf import empty_pb2, unknown_fields
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

_LENGTH_DELIMITED = 2


def invalid_utf8_field(data: bytes, descriptor: Descriptor, path: str = "") -> str | None:
    """The path of the first string field in ``data`` that is not UTF-8 (``context[flight]``), else None."""
    try:
        fields = unknown_fields.UnknownFieldSet(empty_pb2.Empty.FromString(data))
    except DecodeError:
        return path or "(message)"
    for field in fields:
        spec = descriptor.fields_by_number.get(field.field_number)
        if spec is None or field.wire_type != _LENGTH_DELIMITED:
            continue
        name = f"{path}.{spec.name}" if path else spec.name
        if spec.type == FieldDescriptor.TYPE_STRING:
            try:
                field.data.decode("utf-8")
            except UnicodeDecodeError:
                return name
        elif spec.type == FieldDescriptor.TYPE_MESSAGE:
            entry = spec.message_type
            if entry.GetOptions().map_entry:
                found = _map_entry(field.data, entry, name)
            else:
                found = invalid_utf8_field(field.data, entry, name)
            if found:
                return found
    return None


def _map_entry(data: bytes, entry: Descriptor, name: str) -> str | None:
    key = "?"
    bad_value = False
    for field in unknown_fields.UnknownFieldSet(empty_pb2.Empty.FromString(data)):
        if field.field_number == 1 and field.wire_type == _LENGTH_DELIMITED:
            try:
                key = field.data.decode("utf-8")
            except UnicodeDecodeError:
                return f"{name} (a key)"
        elif field.field_number == 2 and field.wire_type == _LENGTH_DELIMITED:
            value_spec = entry.fields_by_number[2]
            if value_spec.type == FieldDescriptor.TYPE_STRING:
                try:
                    field.data.decode("utf-8")
                except UnicodeDecodeError:
                    bad_value = True
    return f"{name}[{key}]" if bad_value else None
