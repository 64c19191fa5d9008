"""Finding which field of an unparseable request is at fault, so the error can name it.

protobuf refuses a message with a non-UTF-8 string or a corrupt encoding anywhere in it and does not say where.
We walk the same bytes field by field with the real message's descriptor (tags, lengths, nested messages and map
entries) and stop at the first field that is not UTF-8 text or whose encoding is broken. The walk runs only for
bytes protobuf has already refused, so it never costs a readable request anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from decision.validation import entry_name

_VARINT, _FIXED64, _LENGTH_DELIMITED, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_DEPTH = 100  # protobuf's own recursion limit for nested messages and groups
NOT_UTF8 = "must be valid UTF-8 text"
CORRUPT = "its protobuf encoding is corrupt (a length past the end, or an invalid tag)"
CORRUPT_ENTRY = "an entry's protobuf encoding is corrupt (a length past the end, or an invalid tag)"


@dataclass(frozen=True)
class Culprit:
    """The field at fault (``context[flight]``, ``context (a key)``, ``""`` for the message itself) and why."""

    field: str
    problem: str


class _Corrupt(Exception):
    pass


def unreadable_field(data: bytes, descriptor: Descriptor) -> Culprit | None:
    """The first field of ``data`` that keeps it from being a ``descriptor`` message, else None."""
    try:
        return _message(data, descriptor, "", 0)
    except _Corrupt:
        return Culprit("", CORRUPT)


def invalid_utf8_field(data: bytes, descriptor: Descriptor, path: str = "") -> str | None:
    """The path of the first string field in ``data`` that is not UTF-8 (``context[flight]``), else None."""
    found = unreadable_field(data, descriptor)
    if found is None or found.problem != NOT_UTF8:
        return None
    return f"{path}.{found.field}" if path else found.field


def _message(data: bytes, descriptor: Descriptor | None, path: str, depth: int) -> Culprit | None:
    """Walk one message's fields; a broken value of a known field is that field's fault, anything else the
    message's (raised)."""
    if depth > _MAX_DEPTH:
        raise _Corrupt
    pos = 0
    while pos < len(data):
        number, wire_type, pos = _tag(data, pos)
        spec = descriptor.fields_by_number.get(number) if descriptor is not None else None
        if spec is None:
            pos = _skip(data, pos, number, wire_type, depth)[0]
            continue
        name = f"{path}.{spec.name}" if path else spec.name
        try:
            pos, payload = _skip(data, pos, number, wire_type, depth)
        except _Corrupt:
            return Culprit(name, CORRUPT)
        # A known field with another wire type is kept as unknown by protobuf too.
        if payload is not None and (found := _field(payload, spec, name, depth)):
            return found
    return None


def _field(payload: bytes, spec: FieldDescriptor, name: str, depth: int) -> Culprit | None:
    if spec.type == FieldDescriptor.TYPE_STRING:
        return None if _is_utf8(payload) else Culprit(name, NOT_UTF8)
    if spec.type != FieldDescriptor.TYPE_MESSAGE:
        return None
    if spec.message_type.GetOptions().map_entry:
        return _map_entry(payload, spec.message_type, name, depth)
    try:
        return _message(payload, spec.message_type, name, depth + 1)
    except _Corrupt:
        return Culprit(name, CORRUPT)


def _map_entry(data: bytes, entry: Descriptor, name: str, depth: int) -> Culprit | None:
    """An entry is named by its key once the key is read (``context[flight]``); a bad key is ``(a key)``."""
    key: str | None = None
    pos = 0
    while pos < len(data):
        where = name if key is None else entry_name(name, key)
        try:
            number, wire_type, pos = _tag(data, pos)
            pos, payload = _skip(data, pos, number, wire_type, depth)
        except _Corrupt:
            return Culprit(where, CORRUPT_ENTRY)
        if payload is None:
            continue
        if number == 1:
            if not _is_utf8(payload):
                return Culprit(f"{name} (a key)", NOT_UTF8)
            key = payload.decode("utf-8")
        elif number == 2 and (found := _field(payload, entry.fields_by_number[2], where, depth)):
            return found
    return None


def _tag(data: bytes, pos: int) -> tuple[int, int, int]:
    """(field number, wire type, position after the tag); an end of group here has no group to end."""
    tag, pos = _varint(data, pos)
    number, wire_type = tag >> 3, tag & 7
    if number == 0 or number > _MAX_FIELD_NUMBER or wire_type == _END_GROUP:
        raise _Corrupt
    return number, wire_type, pos


def _skip(data: bytes, pos: int, number: int, wire_type: int, depth: int) -> tuple[int, bytes | None]:
    """The position after one field's value, and the value itself when it is length-delimited."""
    if wire_type == _VARINT:
        return _varint(data, pos)[1], None
    if wire_type == _FIXED64:
        return _within(data, pos + 8), None
    if wire_type == _FIXED32:
        return _within(data, pos + 4), None
    if wire_type == _LENGTH_DELIMITED:
        length, pos = _varint(data, pos)
        end = _within(data, pos + length)
        return end, data[pos:end]
    if wire_type == _START_GROUP:
        return _group_end(data, pos, number, depth + 1), None
    raise _Corrupt  # wire types 6 and 7 do not exist


def _group_end(data: bytes, pos: int, number: int, depth: int) -> int:
    if depth > _MAX_DEPTH:
        raise _Corrupt
    while pos < len(data):
        tag, pos = _varint(data, pos)
        inner, wire_type = tag >> 3, tag & 7
        if inner == 0 or inner > _MAX_FIELD_NUMBER:
            raise _Corrupt
        if wire_type == _END_GROUP:
            if inner != number:
                raise _Corrupt
            return pos
        pos = _skip(data, pos, inner, wire_type, depth)[0]
    raise _Corrupt  # never closed


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise _Corrupt
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & ((1 << 64) - 1), pos
    raise _Corrupt  # longer than ten bytes


def _within(data: bytes, end: int) -> int:
    if end > len(data):
        raise _Corrupt
    return end


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
