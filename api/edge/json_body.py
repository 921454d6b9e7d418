"""Strict JSON: what a request body may hold, whatever route it goes to.

Python's `json` accepts more than any field here can use, and each extra becomes a
server error further in: `NaN` and `Infinity`, numbers that overflow to infinity or
past 64 bits, nesting deep enough to exhaust the stack, lone UTF-16 surrogates
(which cannot be encoded again) and NUL characters (which PostgreSQL refuses). Each
is refused here as a `MalformedBody` naming where it is, so that nothing behind the
edge ever sees one.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_INT = 2**63 - 1


class MalformedBody(Exception):
    """The body is not JSON the API accepts. `field` is the dotted path to the problem ("body" for the whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


def _no_constant(name: str) -> Any:
    raise MalformedBody("body", f"{name} is not a JSON number; numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedBody("body", f"the number {_cut(text)} is out of range; numbers must be finite")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20:
        raise MalformedBody("body", f"the number {_cut(text)} has more than 19 digits; integers fit in 64 bits")
    value = int(text)
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise MalformedBody("body", f"the number {text} is out of range; integers fit in 64 bits")
    return value


DECODER = json.JSONDecoder(parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant)


def parse_json(raw: bytes, *, content_type: str | None = None) -> Any:
    """The body's JSON value, or MalformedBody saying what is wrong with it and where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody("body", f"is not UTF-8 (byte {exc.start} is not valid){_sent_as(content_type)}") from None
    try:
        value = DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedBody(
            "body", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{_sent_as(content_type)}"
        ) from None
    except RecursionError:
        raise MalformedBody("body", f"is nested more than {MAX_DEPTH} deep") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """MalformedBody for a container nested over MAX_DEPTH, or a string (or key) holding a NUL or a lone surrogate.

    Iterative, so that no body can exhaust the stack here; strings are checked with
    C-speed scans (a 20 MB base64 image costs about a millisecond)."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, dict | list):
            if len(path) >= MAX_DEPTH:
                raise MalformedBody(_dotted(path), f"is nested more than {MAX_DEPTH} deep")
            if isinstance(item, dict):
                for name, child in item.items():
                    _check_string(name, (*path, name))
                    pending.append((child, (*path, name)))
            else:
                pending.extend((child, (*path, i)) for i, child in enumerate(item))


def _check_string(text: str, path: tuple[str | int, ...]) -> None:
    if "\x00" in text:
        raise MalformedBody(_dotted(path), "contains a NUL character (\\u0000), which no field accepts")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            raise MalformedBody(
                _dotted(path), f"contains a lone UTF-16 surrogate (\\u{code:04x}), which is not valid Unicode"
            ) from None


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(_cut(str(part), 40) for part in path) or "body"


def _cut(text: str, limit: int = 30) -> str:
    """Short, and safe to echo: NULs and lone surrogates are shown escaped."""
    text = text if len(text) <= limit else f"{text[:limit]}..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def _sent_as(content_type: str | None) -> str:
    if content_type is None:
        return " (sent without a Content-Type; send JSON as application/json)"
    if "json" not in content_type.lower():
        return f" (sent as {_cut(content_type, 60)}; send JSON as application/json)"
    return ""
