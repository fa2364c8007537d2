"""Reading request bodies: strict JSON, bounded nesting, typed validation.

Python's ``json`` accepts ``NaN``/``Infinity`` and turns ``1e999`` into ``inf``; neither is
JSON a client should be able to push into the sampler, so both are rejected here.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from ._errors import invalid

MAX_DEPTH = 64

M = TypeVar("M", bound=BaseModel)


def parse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def decode_body(raw: bytes) -> str:
    """A JSON body's text. It must be UTF-8 (RFC 8259), a UTF-8 byte order mark aside:
    ``json.loads`` alone would also read UTF-16 and UTF-32 bodies. ``UnicodeDecodeError`` (a
    ``ValueError``) otherwise."""
    return raw.decode("utf-8-sig")


def loads_strict(raw: bytes | str) -> Any:
    """``json.loads`` that refuses non-finite numbers and deep nesting (400 on failure)."""
    try:
        text = decode_body(raw) if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=parse_constant, parse_float=parse_float)
    except RecursionError:
        raise invalid(f"JSON nesting is deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, non-finite numbers, huge ints
        raise invalid(f"Invalid JSON in request body: {exc}") from None
    check_tree(value)
    return value


def check_tree(value: Any) -> None:
    """Bounded nesting, and text that can be encoded: JSON's ``\\ud800`` escapes decode to lone
    surrogates, which no tokenizer (and no UTF-8 writer) accepts."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            _check_text(node, path)
            continue
        if isinstance(node, dict):
            items: Any = node.items()
            for key in node:
                _check_text(key, path)
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if depth > MAX_DEPTH:
            raise invalid(f"JSON nesting is deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1, (*path, key)) for key, child in items
                     if isinstance(child, (dict, list, str)))


def _check_text(text: str, path: tuple[Any, ...]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = ".".join(str(p) for p in path) or "the request body"
        raise invalid(f"Invalid string in '{where}': lone surrogate at character {exc.start} "
                      "(text must be valid Unicode)") from None


def validate(model: type[M], data: Any) -> M:
    """``model.model_validate(data)`` with validation failures as one 400 message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    return describe_errors(exc.errors())


def describe_errors(errors: list[Any], prefix: tuple[Any, ...] = ()) -> str:
    """pydantic's errors as one message; ``prefix``: where the validated value sits."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in (*prefix, *err.get("loc", ())) if not _is_union_tag(p))
        msg = err.get("msg", "invalid value")
        parts.append(f"'{loc}': {msg}" if loc else msg)
    more = len(errors) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "Invalid request: " + "; ".join(parts)


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried ("list[int]", "function-after[...]");
    # that is noise for a client.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool",
                                                               "dict", "list", "none"})


def _integral(value: Any) -> Any:
    # JSON has one number type: 128.0 is a fine token count (upstream accepts it too),
    # 128.5 is not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
"""An integer that also accepts an integral float such as ``128.0`` (but never a bool)."""


class ApiModel(BaseModel):
    """Base of request models: strict types (no "5" for 5), unknown fields kept."""

    model_config = ConfigDict(strict=True, extra="allow", protected_namespaces=())
