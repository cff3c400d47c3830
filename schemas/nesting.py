"""How deep JSON nests, measured without recursion, and decoding JSON nested deeper than
msgspec can decode.

msgspec decodes (and even skips, for a `msgspec.Raw` field) by recursion, so a value
nested about a thousand arrays deep raises RecursionError wherever it is decoded: in the
API before this limit existed (a 500), in a projector or a dispatcher reading the log (a
crashed task, a start-up that fails). The API refuses payloads nested deeper than its limit
(`exceeds`), and every reader of the log decodes what is already there with `decode_deep`,
which cuts the deep parts out before msgspec sees them and puts them back as raw JSON.

Depth counts arrays and objects: `1` and `"a"` are 0 deep, `[]` and `{}` 1, `[{"a": []}]` 3.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, TypeVar, cast

import msgspec
from msgspec.structs import force_setattr

T = TypeVar("T")

# A JSON string, escapes included (the unrolled form: no backtracking, no recursion).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OBJECTS_AS_ARRAYS = bytes.maketrans(b"{}", b"[]")  # only the depth counts, not the kind
_RUN = re.compile(rb"\[+|\]+")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# Peeling the innermost empty pairs ([], once {} are written as []) lowers the depth by
# exactly one a pass. It goes on while a pass takes away at least 1/10 of what is left (so
# at most ten passes' worth of work): what stays for the Python loop is either nothing or
# runs of brackets at least ten long on average.
_PEEL_WHILE_SHRINKING_BY = 10
# decode_deep keeps this many levels for msgspec to decode: more than any typed part of an
# event has (envelope, event, schedule definition, trigger), far fewer than recursion allows.
KEEP_LEVELS = 8


def exceeds(data: bytes, limit: int) -> bool:
    """Does `data` (valid JSON) nest deeper than `limit`? Two byte counts decide it for
    anything with `limit` brackets or fewer, whatever its size."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    return nesting_depth(data) > limit


def nesting_depth(data: bytes) -> int:
    """How many arrays and objects deep `data` (valid JSON) nests. Linear in its size:
    strings are dropped and brackets kept by regular expressions (in C), then the runs of
    opening and closing brackets are walked."""
    brackets = _STRING.sub(b"", data).translate(_OBJECTS_AS_ARRAYS, _NOT_BRACKETS)
    peeled, before = 0, len(brackets) * 2
    while brackets and len(brackets) * _PEEL_WHILE_SHRINKING_BY <= before * (
            _PEEL_WHILE_SHRINKING_BY - 1):
        before = len(brackets)
        brackets = brackets.replace(b"[]", b"")
        peeled += 1
    level = deepest = 0
    for run in _RUN.finditer(brackets):
        size = run.end() - run.start()
        if brackets[run.start()] == ord("["):
            level += size
            deepest = max(deepest, level)
        else:
            level -= size
    return peeled + deepest


def decode_deep(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """decoder.decode(data), also for JSON too deep for msgspec's recursion: then every
    array or object below KEEP_LEVELS is cut out, the rest decoded, and each cut part put
    back as it was, as `msgspec.Raw` (a Raw field gets its original bytes whole). Raises
    what decoder.decode raises for JSON that is invalid in other ways."""
    try:
        return decoder.decode(data)
    except RecursionError:
        pass
    shallow, parts, marker = _cut(data)
    return cast(T, _restore(decoder.decode(shallow), parts, marker))


def _cut(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """data with each array or object that starts below KEEP_LEVELS replaced by a string
    naming it ("\\u0000<marker>:<n>", a marker no input can have guessed); the parts cut
    out, in order; the marker."""
    marker = secrets.token_hex(8).encode()
    pieces: list[bytes] = []
    parts: list[bytes] = []
    level, start, done = 0, -1, 0
    for token in _TOKEN.finditer(data):
        char = data[token.start()]
        if char in b"[{":
            level += 1
            if level == KEEP_LEVELS + 1:
                start = token.start()
        elif char in b"]}":
            if level == KEEP_LEVELS + 1 and start >= 0:
                pieces += [data[done:start], b'"\\u0000%s:%d"' % (marker, len(parts))]
                parts.append(data[start:token.end()])
                done, start = token.end(), -1
            level -= 1
    pieces.append(data[done:])
    return b"".join(pieces), parts, marker


def _restore(value: Any, parts: list[bytes], marker: bytes) -> Any:
    """value with every placeholder of _cut replaced by its part: inside Raw bytes, the
    placeholder's JSON text; anywhere else (an `Any` field, a dict or list in one), the
    string it decoded to, by a Raw of the part."""
    quoted = re.compile(rb'"\\u0000' + marker + rb':(\d+)"')
    named = "\x00" + marker.decode() + ":"

    def fix(item: Any) -> Any:
        if isinstance(item, msgspec.Raw):
            raw = bytes(item)
            if marker not in raw:
                return item
            return msgspec.Raw(quoted.sub(lambda m: parts[int(m[1])], raw))
        if isinstance(item, str):
            return msgspec.Raw(parts[int(item[len(named):])]) if item.startswith(named) else item
        if isinstance(item, msgspec.Struct):
            for name in item.__struct_fields__:
                field = getattr(item, name)
                fixed = fix(field)
                if fixed is not field:
                    force_setattr(item, name, fixed)
        elif isinstance(item, list):
            item[:] = [fix(x) for x in item]
        elif isinstance(item, dict):
            for key, x in item.items():
                item[key] = fix(x)
        return item

    return fix(value)
