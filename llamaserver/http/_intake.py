"""Reading a request: its body within bounds, then JSON, limits and validation, with the
costly part off the event loop.

``await read_model(ctx, Model)`` is how a view reads its body.  A small body (most requests)
is parsed and validated on the event loop; a larger one in the HTTP worker pool, because a
parse holds the interpreter lock for as long as it runs.  Measured on 2 loaded cores, one
``json.loads`` of a 60 MB body held it for 0.16 s (one long string), 0.4 s (12 M nulls),
0.8 s (15 M empty strings) and 3.9 s with the validation of 600 k small messages: on the
loop or in a thread, every other request (``/health`` included) waited that long.  So:

- the body is read within ``--timeout`` (408) and ``--body-max-bytes`` (413), and a
  shutdown cut while it is still arriving answers 503;
- a body whose number of JSON values may be large (counted from its commas, colons and
  brackets, in slices) is parsed by the pure-Python scanner, which lets other threads run
  between values, and is bounded to ``MAX_JSON_VALUES`` values and ``MAX_JSON_CONTAINERS``
  objects and arrays (413); other bodies by the C scanner, whose hold is then short;
- chat messages are counted (``--chat-max-messages``, ``--chat-max-chars``: 400) before
  they are validated, and a long list of them is validated item by item.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from quart import request
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from ._body import (MAX_DEPTH, check_tree, decode_body, describe_errors, loads_strict,
                    parse_constant, parse_float, validate)
from ._errors import ApiError, invalid

if TYPE_CHECKING:
    from ._context import ApiContext

M = TypeVar("M", bound=BaseModel)

__all__ = ["RequestLimits", "parse_body", "read_body", "read_model", "read_value"]

INLINE_BYTES = 16 * 1024        # parsed and validated on the event loop (well under 1 ms)
_SLICE = 1 << 20                 # bytes counted per step, between which other threads run
_C_PARSE_VALUES = 100_000        # at most this many values: the C scanner (~10 ms at most)
MAX_JSON_VALUES = 4_000_000      # a prompt of 4 M token ids still fits
MAX_JSON_CONTAINERS = 200_000    # objects and arrays: a garbage-collector pass over them stays short
_STEP_ITEMS = 256                # lists of sub-models longer than this are validated item by item
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "input_video", "image", "file"})


@dataclass(frozen=True)
class RequestLimits:
    body_max_bytes: int
    chat_max_messages: int
    chat_max_chars: int
    timeout: float

    @classmethod
    def from_settings(cls, settings: Any) -> RequestLimits:
        return cls(settings.body_max_bytes, settings.chat_max_messages, settings.chat_max_chars,
                   float(settings.timeout))

    def check_chat(self, data: dict[str, Any], field: str = "messages") -> None:
        """400 for a chat whose messages (``data[field]``) pass --chat-max-messages or
        --chat-max-chars."""
        messages = data.get(field)
        if not isinstance(messages, list):
            return  # validation names what is wrong
        if len(messages) > self.chat_max_messages:
            raise invalid(f"'{field}' has {len(messages)} messages; this server takes at most "
                          f"{self.chat_max_messages} (--chat-max-messages)")
        total = 0
        for message in messages:
            total += _text_chars(message)
            if total > self.chat_max_chars:
                raise invalid(f"'{field}' hold more than {self.chat_max_chars} characters of "
                              "text; this server takes at most that many (--chat-max-chars)")

    def check_input(self, data: dict[str, Any]) -> None:
        """The chat limits on a Responses request's ``input`` items."""
        self.check_chat(data, "input")


def _text_chars(value: Any) -> int:
    """Characters of the strings in a message, media parts left out (their data is bounded by
    --media-max-bytes).  The tree's depth is already bounded by ``check_tree``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and kind in _MEDIA_PARTS:  # any JSON may stand there
            return 0
        return sum(_text_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return 0


# ---- the body ---------------------------------------------------------------------------

async def read_body(ctx: ApiContext) -> bytes:
    limits = ctx.limits
    if (request.content_length or 0) > limits.body_max_bytes:
        raise _too_large(limits)
    # The standalone app sets both from the settings; a host app that mounts the server may
    # not have (its own values would apply).
    request.body_timeout = limits.timeout  # type: ignore[assignment]
    try:
        raw = await ctx.drain.until_cut(request.get_data(as_text=False))
    except RequestEntityTooLarge:
        raise _too_large(limits) from None
    except RequestTimeout:
        raise ApiError(408, f"the request body did not arrive within {limits.timeout:g} s "
                       "(--timeout)", "timeout_error", close=True) from None
    if len(raw) > limits.body_max_bytes:
        raise _too_large(limits)
    return raw


def _too_large(limits: RequestLimits) -> ApiError:
    return ApiError(413, f"the request body is larger than {limits.body_max_bytes} bytes "
                    "(--body-max-bytes)", close=True)


async def read_value(ctx: ApiContext) -> Any:
    """The body as any JSON value (an empty body is None)."""
    raw = await read_body(ctx)
    if len(raw) <= INLINE_BYTES:
        return _value(raw)
    return await ctx.run_blocking(_value, raw)


async def read_model(ctx: ApiContext, model: type[M], *,
                     check: Callable[[dict[str, Any]], None] | None = None) -> M:
    """The body as ``model``; ``check(data)`` runs on the parsed object first (limits)."""
    raw = await read_body(ctx)
    if len(raw) <= INLINE_BYTES:
        return _model(raw, model, check)
    return await ctx.run_blocking(_model, raw, model, check)


def _value(raw: bytes) -> Any:
    return parse_body(raw) if raw.strip() else None


def _object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}  # an empty body is an empty object; `null` is not
    value = parse_body(raw)
    if not isinstance(value, dict):
        raise invalid("Request body must be a JSON object")
    return value


def _model(raw: bytes, model: type[M], check: Callable[[dict[str, Any]], None] | None) -> M:
    data = _object(raw)
    if check is not None:
        check(data)
    if len(raw) <= INLINE_BYTES:
        return validate(model, data)
    return _validate_in_steps(model, data)


# ---- JSON -------------------------------------------------------------------------------

def parse_body(raw: bytes) -> Any:
    """Strict JSON (see ``_body.loads_strict``), bounded in values and containers."""
    if _most_values(raw) <= min(_C_PARSE_VALUES, MAX_JSON_VALUES, MAX_JSON_CONTAINERS):
        return loads_strict(raw)
    try:
        text = decode_body(raw)
        value = _CountingDecoder().decode(text)
    except RecursionError:
        raise invalid(f"JSON nesting is deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # bad encoding too
        raise invalid(f"Invalid JSON in request body: {exc}") from None
    check_tree(value)
    return value


def _most_values(raw: bytes) -> int:
    """An upper bound of the values in ``raw``: each value after the first follows a comma or
    a colon, or opens an array (a count in slices: each one holds the lock ~0.1 ms)."""
    n = 1
    for start in range(0, len(raw), _SLICE):
        end = start + _SLICE
        n += raw.count(b",", start, end) + raw.count(b":", start, end) + raw.count(b"[", start, end)
    return n


class _TooMany(ValueError):
    pass


class _CountingDecoder(json.JSONDecoder):
    """``json``'s pure-Python scanner, counting values and containers as it goes."""

    def __init__(self) -> None:
        super().__init__(parse_float=parse_float, parse_constant=parse_constant)
        self.values = self.containers = 0
        plain_array, plain_object = self.parse_array, self.parse_object

        def parse_array(s_and_end: Any, scan_once: Any) -> Any:
            self._container()
            return plain_array(s_and_end, self._counted(scan_once))

        def parse_object(s_and_end: Any, strict: Any, scan_once: Any, *args: Any) -> Any:
            self._container()
            return plain_object(s_and_end, strict, self._counted(scan_once), *args)

        self.parse_array, self.parse_object = parse_array, parse_object
        self.scan_once = json.scanner.py_make_scanner(self)

    def _container(self) -> None:
        self.containers += 1
        if self.containers > MAX_JSON_CONTAINERS:
            raise _TooMany(f"more than {MAX_JSON_CONTAINERS} objects and arrays")

    def _counted(self, scan_once: Callable[[str, int], Any]) -> Callable[[str, int], Any]:
        def scan(s: str, idx: int) -> Any:
            self.values += 1
            if self.values > MAX_JSON_VALUES:
                raise _TooMany(f"more than {MAX_JSON_VALUES} values")
            return scan_once(s, idx)
        return scan

    def decode(self, s: str, _w: Any = json.decoder.WHITESPACE.match) -> Any:
        try:
            return super().decode(s)
        except _TooMany as exc:
            raise ApiError(413, f"the request body has {exc} (a JSON body may hold at most "
                           f"{MAX_JSON_VALUES} values and {MAX_JSON_CONTAINERS} objects and "
                           "arrays)") from None


# ---- validation -------------------------------------------------------------------------

def _validate_in_steps(model: type[M], data: dict[str, Any]) -> M:
    """``validate(model, data)``, with long lists of sub-models (chat messages) validated one
    item at a time: pydantic holds the interpreter lock for a whole call (0.1 s for 20,000
    messages), other threads get their turns between items."""
    data = dict(data)
    for name, field in model.model_fields.items():
        items = data.get(field.alias or name)
        item_model = _list_item_model(field.annotation)
        if item_model is None or not isinstance(items, list) or len(items) <= _STEP_ITEMS:
            continue
        validated = []
        for i, item in enumerate(items):
            try:
                validated.append(item_model.model_validate(item))
            except ValidationError as exc:
                raise invalid(describe_errors(exc.errors(), prefix=(name, i))) from None
        data[field.alias or name] = validated
    return validate(model, data)


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is not list:
        return None
    (item,) = get_args(annotation) or (None,)
    return item if isinstance(item, type) and issubclass(item, BaseModel) else None
