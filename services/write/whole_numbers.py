"""The integer fields of a request body take a whole number however JSON writes it: 58,
58.0 or 5.8e1.

JSON has one kind of number, and JSON Schema counts 58.0 as an integer, so a client (and
schemathesis, issue 18 item 10) may send `"priority": 58.0` where the API documents an
integer. msgspec refuses a float for an int field, and its lenient mode (strict=False)
would also take the string "58", which the document refuses. So a body is decoded
strictly, and only when that fails on a float given for an integer are the whole numbers
written as floats in the body's integer fields rewritten, and the body decoded again. A
payload is never touched: it stays as it was sent, byte for byte.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec
from msgspec import inspect

T = TypeVar("T")

_FLOAT_FOR_INT = re.compile(r"Expected `int[^`]*`, got `float`")
_NUMBER = re.compile(rb"\s*-?\d+(\.\d+)?([eE][+-]?\d+)?\s*")
_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_array = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()
_MOST_DIGITS = 19  # 64-bit integers have at most 19 digits


def decode_request(decoder: msgspec.json.Decoder[T], shape: type[T], body: bytes) -> T:
    """decoder.decode(body) (a Decoder of `shape`, a Struct), which also takes a whole
    number written as a float for an integer field; raises what the decoder raises."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        if not _FLOAT_FOR_INT.search(str(exc)):
            raise
        rewritten = _rewrite(body, inspect.type_info(shape))
        if rewritten == body:
            raise
    return decoder.decode(rewritten)


def _rewrite(raw: bytes, kind: inspect.Type) -> bytes:
    """raw (JSON of type `kind`) with the whole numbers of its integer fields written as
    integers; raw itself where there is nothing to rewrite or it is not of that shape."""
    kind = _unwrapped(kind)
    try:
        if isinstance(kind, inspect.StructType):
            fields = _object.decode(raw)
            for field in kind.fields:
                if field.encode_name in fields:
                    value = fields[field.encode_name]
                    fields[field.encode_name] = msgspec.Raw(_rewrite(bytes(value), field.type))
            return _encoder.encode(fields)
        if isinstance(kind, inspect.ListType):
            return _encoder.encode([msgspec.Raw(_rewrite(bytes(item), kind.item_type))
                                    for item in _array.decode(raw)])
    except (msgspec.ValidationError, msgspec.DecodeError):
        return raw
    return _whole(raw) if _takes_int_not_float(kind) else raw


def _unwrapped(kind: inspect.Type) -> inspect.Type:
    return kind.type if isinstance(kind, inspect.Metadata) else kind


def _takes_int_not_float(kind: inspect.Type) -> bool:
    options: Any = kind.types if isinstance(kind, inspect.UnionType) else (kind,)
    options = [_unwrapped(option) for option in options]
    return (any(isinstance(o, inspect.IntType) for o in options)
            and not any(isinstance(o, inspect.FloatType) for o in options))


def _whole(raw: bytes) -> bytes:
    """A JSON number with no fraction, as an integer (58.0 -> 58, 5.8e1 -> 58); raw else."""
    if not _NUMBER.fullmatch(raw):
        return raw
    try:
        number = Decimal(raw.decode())
    except InvalidOperation:
        return raw
    if number.adjusted() > _MOST_DIGITS or number != number.to_integral_value():
        return raw  # a fraction; or larger than any integer field (5e999999 has no int)
    return b"%d" % int(number)
