"""JSON Schema -> GBNF grammar, for ``json_schema`` and OpenAI's ``response_format``.

Covers the schemas clients send in practice: ``type`` (one or a list), ``properties`` /
``required`` / ``additionalProperties``, ``items`` / ``prefixItems`` / ``minItems`` /
``maxItems``, ``enum``, ``const``, ``anyOf`` / ``oneOf``, ``allOf`` of objects, local
``$ref`` (``#/$defs/...``, ``#/definitions/...``), string ``minLength`` / ``maxLength`` and
the formats ``date``, ``time``, ``date-time`` and ``uuid``, and non-negative numbers
(``minimum >= 0``).  Other numeric bounds are not enforced; ``pattern`` is refused with
:class:`SchemaError` rather than silently ignored.

Properties are generated in declaration order, required ones first.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_ffi import MAX_GRAMMAR_BYTES

__all__ = ["SchemaError", "schema_to_grammar", "gbnf_literal", "JSON_GRAMMAR"]

MAX_REPEAT = 10_000


class SchemaError(ValueError):
    """The schema uses something the converter does not support, or is malformed."""


_PRIMITIVES = {
    "ws": '| " " | "\\n" [ \\t]{0,20}',
    "char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": '"\\"" char* "\\"" ws',
    "integral-part": '[0] | [1-9] [0-9]{0,15}',
    "integer": '("-"? integral-part) ws',
    "nonneg-integer": 'integral-part ws',
    "number": '("-"? integral-part) ("." [0-9]+)? ([eE] [-+]? integral-part)? ws',
    "nonneg-number": 'integral-part ("." [0-9]+)? ([eE] [-+]? integral-part)? ws',
    "boolean": '("true" | "false") ws',
    "null": '"null" ws',
    "value": 'object | array | string | number | boolean | null',
    "object": '"{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws',
    "array": '"[" ws ( value ("," ws value)* )? "]" ws',
    "date": '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )',
    "time": '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
            '( "Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] )?',
    "date-string": '"\\"" date "\\"" ws',
    "time-string": '"\\"" time "\\"" ws',
    "date-time-string": '"\\"" date "T" time "\\"" ws',
    "uuid-string": '"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
                   '[0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\\"" ws',
}

_DEPENDENCIES = {
    "string": ["char", "ws"], "integer": ["integral-part", "ws"],
    "nonneg-integer": ["integral-part", "ws"], "number": ["integral-part", "ws"],
    "nonneg-number": ["integral-part", "ws"], "boolean": ["ws"], "null": ["ws"],
    "value": ["object", "array", "string", "number", "boolean", "null"],
    "object": ["string", "value", "ws"], "array": ["value", "ws"],
    "date-string": ["date", "ws"], "time-string": ["time", "ws"],
    "date-time-string": ["date", "time", "ws"], "uuid-string": ["ws"],
}


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


# Compact JSON: at most one space where JSON allows whitespace, so that a model cannot spend
# its token budget on indentation (a tool call cut short by max_tokens is no tool call).
_COMPACT_WS = '| " "'


def _count(schema: dict[str, Any], key: str, default: int | None) -> int | None:
    """A bound such as ``minItems``: a whole number in [0, MAX_REPEAT] (or ``default``)."""
    value = schema.get(key, default)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPEAT:
        raise SchemaError(f"'{key}' must be a whole number from 0 to {MAX_REPEAT}")
    return value


class _Converter:
    def __init__(self, root: Any, compact: bool = False) -> None:
        self.root = root
        self.compact = compact
        self.rules: dict[str, str] = {}
        self.ref_rules: dict[str, str] = {}
        self.by_body: dict[str, list[str]] = {}  # rule bodies already written, for reuse
        self.size = 0

    def use(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = (_COMPACT_WS if name == "ws" and self.compact
                                else _PRIMITIVES[name])
            for dep in _DEPENDENCIES.get(name, ()):
                self.use(dep)
        return name

    def add(self, hint: str, body: str, *, reuse: bool = True) -> str:
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower() or "rule"
        if reuse:
            for name in self.by_body.get(body, ()):
                if name.startswith(base):
                    return name
        name, i = base, 1
        while name in self.rules or name in _PRIMITIVES:
            i += 1
            name = f"{base}-{i}"
        # Checked while building: a schema can ask for far more text than it holds (many
        # properties, big enums), and libllama refuses a grammar this size anyway.
        self.size += len(name) + len(body)
        if self.size > MAX_GRAMMAR_BYTES:
            raise SchemaError(f"the schema needs a grammar larger than {MAX_GRAMMAR_BYTES} bytes")
        self.rules[name] = body
        self.by_body.setdefault(body, []).append(name)
        return name

    def visit(self, schema: Any, hint: str) -> str:
        """The name of a rule that matches ``schema`` (followed by optional whitespace)."""
        if schema is True or schema == {}:
            return self.use("value")
        if schema is False:
            raise SchemaError("a 'false' schema matches nothing")
        if not isinstance(schema, dict):
            raise SchemaError(f"expected a schema object at {hint}")
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "const" in schema:
            self.use("ws")
            return self.add(hint, gbnf_literal(json.dumps(schema["const"], ensure_ascii=False))
                            + " ws")
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError("'enum' must be a non-empty array")
            self.use("ws")
            alts = " | ".join(gbnf_literal(json.dumps(v, ensure_ascii=False)) for v in values)
            return self.add(hint, f"({alts}) ws")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = schema[key]
                if not isinstance(options, list) or not options:
                    raise SchemaError(f"'{key}' must be a non-empty array")
                names = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(options)]
                return self.add(hint, " | ".join(names))
        if "allOf" in schema:
            return self.visit(self.merge_all_of(schema), hint)
        kind = schema.get("type")
        if isinstance(kind, list):
            names = [self.visit({**schema, "type": k}, f"{hint}-{k}") for k in kind]
            return self.add(hint, " | ".join(names))
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return self.use("value")
        if kind == "object":
            return self.object(schema, hint)
        if kind == "array":
            return self.array(schema, hint)
        if kind == "string":
            return self.string(schema, hint)
        if kind in ("integer", "number"):
            minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
            nonneg = isinstance(minimum, (int, float)) and minimum >= 0
            return self.use(("nonneg-" if nonneg else "") + kind)
        if kind in ("boolean", "null"):
            return self.use(kind)
        raise SchemaError(f"unknown type {kind!r}")

    def ref(self, ref: Any) -> str:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaError(f"only local references are supported, not {ref!r}")
        if ref in self.ref_rules:
            return self.ref_rules[ref]
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"unresolved reference {ref!r}")
            target = target[part]
        name = self.add("ref-" + ref.rsplit("/", 1)[-1], "<pending>", reuse=False)
        self.ref_rules[ref] = name  # recursive schemas refer back to this name
        body = self.visit(target, name + "-body")
        if body == name:
            raise SchemaError(f"{ref!r} refers to itself and to nothing else")
        self.rules[name] = body
        return name

    def merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = self.resolve(part["$ref"])
            if not isinstance(part, dict) or part.get("type", "object") != "object":
                raise SchemaError("'allOf' is supported for object schemas only")
            merged["properties"].update(part.get("properties", {}))
            merged["required"].extend(part.get("required", []))
        return merged

    def resolve(self, ref: str) -> Any:
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if target is None:
            raise SchemaError(f"unresolved reference {ref!r}")
        return target

    def object(self, schema: dict[str, Any], hint: str) -> str:
        self.use("ws")
        props = schema.get("properties") or {}
        if not isinstance(props, dict):
            raise SchemaError("'properties' must be an object")
        required = schema.get("required") or []
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise SchemaError("'required' must be an array of property names")
        required = set(required)
        extra = schema.get("additionalProperties", not props)
        kv: dict[str, str] = {}
        for key, sub in props.items():
            value = self.visit(sub, f"{hint}-{key}")
            kv[key] = self.add(f"{hint}-{key}-kv",
                               f'{gbnf_literal(json.dumps(key, ensure_ascii=False))} ws ":" ws '
                               f"{value}")
        ordered_req = [k for k in props if k in required]
        optional = [k for k in props if k not in required]
        extra_kv = None
        if extra is not False:
            value = self.visit({} if extra is True else extra, f"{hint}-additional")
            self.use("string")
            extra_kv = self.add(f"{hint}-additional-kv", f'string ":" ws {value}')
        tail_items = [kv[k] for k in optional]
        # Optional members in order; each may be absent.  The first member written needs no
        # comma, so when nothing is required each optional member can open the list.
        head = ' "," ws '.join(kv[k] for k in ordered_req)
        tails = self.optional_tails(tail_items, extra_kv, hint)
        if head:
            body = f'"{{" ws {head} {tails[0]} "}}" ws'
        else:
            openers = [f"{item} {tails[i + 1]}".strip() for i, item in enumerate(tail_items)]
            if extra_kv:
                openers.append(f'{extra_kv} ("," ws {extra_kv})*')
            inner = f"({' | '.join(openers)})?" if openers else ""
            body = f'"{{" ws {inner} "}}" ws'
        return self.add(hint, re.sub(r"\s+", " ", body))

    def optional_tails(self, items: list[str], extra_kv: str | None, hint: str) -> list[str]:
        """``tails[i]``: members ``items[i:]``, each optional, then any extra members; one
        rule each, so that n optional members make a grammar of size n, not n squared."""
        tails = [f'("," ws {extra_kv})*' if extra_kv else ""]
        for i in reversed(range(len(items))):
            body = f'("," ws {items[i]})? {tails[0]}'.strip()
            tails.insert(0, self.add(f"{hint}-tail-{i}", body))
        return tails

    def array(self, schema: dict[str, Any], hint: str) -> str:
        self.use("ws")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            names = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(prefix)]
            joined = ' "," ws '.join(names)
            return self.add(hint, f'"[" ws {joined} "]" ws' if names else '"[" ws "]" ws')
        item = self.visit(schema.get("items", {}), f"{hint}-item")
        lo = _count(schema, "minItems", 0) or 0
        hi = _count(schema, "maxItems", None)
        if hi is not None and hi < lo:
            raise SchemaError("'maxItems' is below 'minItems'")
        if hi == 0:
            return self.add(hint, '"[" ws "]" ws')
        more_lo = max(lo - 1, 0)
        more_hi = "" if hi is None else str(hi - 1)
        rep = f"{{{more_lo},{more_hi}}}"
        inner = f'{item} ("," ws {item}){rep}'
        if lo == 0:
            inner = f"({inner})?"
        return self.add(hint, f'"[" ws {inner} "]" ws')

    def string(self, schema: dict[str, Any], hint: str) -> str:
        if "pattern" in schema:
            raise SchemaError("'pattern' is not supported")
        fmt = schema.get("format")
        if fmt in ("date", "time", "date-time", "uuid"):
            return self.use(f"{fmt}-string")
        lo = _count(schema, "minLength", None)
        hi = _count(schema, "maxLength", None)
        if lo is None and hi is None:
            return self.use("string")
        lo = lo or 0
        if hi is not None and hi < lo:
            raise SchemaError("'maxLength' is below 'minLength'")
        self.use("char")
        self.use("ws")
        return self.add(hint, f'"\\"" char{{{lo},{"" if hi is None else hi}}} "\\"" ws')

    def grammar(self, root: str) -> str:
        top = self.visit(self.root, "root-value")
        self.use("ws")
        lines = [f"{root} ::= ws {top}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"


def schema_to_grammar(schema: Any, *, root: str = "root", compact: bool = False) -> str:
    """GBNF for JSON text that matches ``schema`` (``{}`` or ``True``: any JSON value).

    ``root`` names the top rule (another name lets the rules be part of a larger grammar:
    the others are named ``root-value...``, ``ref-...`` and JSON's primitives); ``compact``
    allows at most one space between tokens.
    """
    try:
        return _Converter(schema, compact).grammar(root)
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(str(exc)) from None
    except RecursionError:
        raise SchemaError("schema is nested too deeply") from None


JSON_GRAMMAR = schema_to_grammar({"type": "object"})
"""Any JSON object: OpenAI's ``response_format: {"type": "json_object"}``."""
