"""The OpenAPI 3.1 document of a running server, built from its url_map and ``_openapi_table``.

Every schema comes from a pydantic model: the request models the views validate with, the
answer models of ``_llama_answers``/``_openai_answers``, the query and path models.  They are
generated in one pass (``GenerateJsonSchema.generate_definitions``), so a model used by
several routes is one entry of ``components/schemas`` and every ``$ref`` points there.

Streamed answers are described as OpenAPI 3.2 does for ``text/event-stream`` (each event an
object whose ``data`` is JSON text with a ``contentSchema``), which schemathesis checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from werkzeug.routing import Rule

from ._auth import PUBLIC_ENDPOINTS
from ._llama_answers import ErrorResponse
from ._openapi_table import Op, Text, find_op

__all__ = ["build_document", "documented_rules", "undocumented_rules"]

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})

_ERRORS = {
    400: "Bad input: malformed JSON, a wrong type or value, an unknown token id, a broken "
         "grammar or schema, a prompt too long for a slot (exceed_context_size_error)",
    401: "A missing or wrong API key (Authorization: Bearer KEY or X-Api-Key: KEY)",
    404: "Not found",
    405: "The path takes other methods (Allow names them)",
    413: "The body is larger than the server's limit",
    500: "The model failed to load",
    501: "Not supported by this server's flags or model (the message says which)",
    503: "The model is loading, or the wait queue is full (Retry-After says when to retry)",
}


def bare_endpoint(endpoint: str) -> str:
    return endpoint.rsplit(".", 1)[-1]


def documented_rules(rules: Iterable[Rule], blueprint: str) -> list[Rule]:
    """The rules this server owns: its blueprint's, and app-level ones that have a row (a
    host app's own routes are not ours to describe)."""
    out = []
    for rule in rules:
        mine = rule.endpoint.startswith(blueprint + ".")
        if mine or ("." not in rule.endpoint and find_op(rule.endpoint) is not None):
            out.append(rule)
    return out


def undocumented_rules(rules: Iterable[Rule]) -> list[str]:
    """``"METHODS /path (endpoint)"`` for each rule without a row in the table."""
    return [f"{','.join(sorted(_methods(rule)))} {rule.rule} ({rule.endpoint})"
            for rule in rules if find_op(bare_endpoint(rule.endpoint)) is None]


def _methods(rule: Rule) -> list[str]:
    return sorted(set(rule.methods or ()) - _IGNORED_METHODS)


def openapi_path(rule: Rule) -> str:
    """``/slots/<id_slot>`` -> ``/slots/{id_slot}`` (converters dropped)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


class _Schemas:
    """Every type of the documented rows turned into JSON Schema in one pass."""

    def __init__(self, ops: Iterable[Op]) -> None:
        inputs: dict[tuple[Any, str], Any] = {}
        for op in ops:
            for kind, mode in ((op.request, "validation"), (op.query, "validation"),
                               (op.path, "validation"), (op.answer, "serialization"),
                               (op.events, "serialization")):
                if kind is not None and not isinstance(kind, Text):
                    inputs.setdefault((kind, mode), TypeAdapter(kind).core_schema)
        inputs.setdefault((ErrorResponse, "serialization"), ErrorResponse.__pydantic_core_schema__)
        generator = GenerateJsonSchema(ref_template=_REF)
        by_type, components = generator.generate_definitions(
            [(key, key[1], core) for key, core in inputs.items()])  # type: ignore[misc]
        self._by_type = _standard_bounds(by_type)
        self.components = _standard_bounds(components)

    def of(self, kind: Any, mode: str) -> dict[str, Any]:
        return self._by_type[((kind, mode), mode)]  # type: ignore[index]

    def fields(self, model: type[BaseModel]) -> tuple[dict[str, Any], set[str]]:
        """(properties, required) of a model's schema (query and path models)."""
        schema = self.of(model, "validation")
        if "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema.get("properties", {}), set(schema.get("required", ()))


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _standard_bounds(node: Any) -> Any:
    """pydantic writes a bound on an integer with a before-validator (``JsonInt``) under its
    Python name (``ge``); JSON Schema calls it ``minimum``."""
    if isinstance(node, dict):
        return {_BOUNDS.get(k, k) if node.get("type") in ("integer", "number") else k:
                _standard_bounds(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_standard_bounds(v) for v in node]
    return node


def _parameters(op: Op, rule: Rule, schemas: _Schemas) -> list[dict[str, Any]]:
    params = []
    typed, _ = schemas.fields(op.path) if op.path is not None else ({}, set())
    for name in sorted(rule.arguments):
        schema = dict(typed.get(name, {"type": "string"}))
        params.append({"name": name, "in": "path", "required": True,
                       "description": schema.pop("description", ""), "schema": schema})
    if op.query is not None:
        props, required = schemas.fields(op.query)
        for name, prop in props.items():
            schema = dict(prop)
            params.append({"name": name, "in": "query", "required": name in required,
                           "description": schema.pop("description", ""), "schema": schema})
    return params


def _body_required(kind: Any) -> bool:
    """An empty body counts as ``{}``: it is required only when the model needs a field."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return any(f.is_required() for f in kind.model_fields.values())
    return True


def _sse(events: dict[str, Any], done: bool, named: bool) -> dict[str, Any]:
    json_data = {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": events}
    data = {"anyOf": [{"const": "[DONE]"}, json_data]} if done else json_data
    event: dict[str, Any] = {"type": "string"}
    if named:
        event["description"] = "the event's name: its data's type"
    return {"schema": {"type": "object", "required": ["data", "event"] if named else ["data"],
                       "properties": {"data": data, "event": event,
                                      "id": {"type": "string"}}}}


def _answer(op: Op, schemas: _Schemas, status: int) -> dict[str, Any]:
    answer = op.answer
    if isinstance(answer, Text):
        return {"description": answer.description,
                "content": {media: {"schema": {"type": "string"}}
                            for media in answer.media_types}}
    content: dict[str, Any] = {}
    if answer is not None:
        content["application/json"] = {"schema": schemas.of(answer, "serialization")}
    if op.events is not None and status == 200:
        content["text/event-stream"] = _sse(schemas.of(op.events, "serialization"),
                                            op.done_event, op.named_events)
    return {"description": "OK" if status == 200 else _ERRORS.get(status, "Error"),
            "content": content}


def _operation(endpoint: str, key: str, op: Op, rule: Rule, schemas: _Schemas,
               auth: bool) -> dict[str, Any]:
    """``auth``: whether keys guard the route (the server has keys, and the route is the
    blueprint's: the web UI's app-level routes are public)."""
    out: dict[str, Any] = {"operationId": endpoint, "summary": op.summary, "tags": [op.tag]}
    description = op.description
    if endpoint in op.also:  # (a family's members are operations of their own)
        description = f"Another name for `{key}`. {description}".strip()
        out["x-alias-of"] = key
    if description:
        out["description"] = description
    params = _parameters(op, rule, schemas)
    if params:
        out["parameters"] = params
    if op.request is not None:
        out["requestBody"] = {"required": _body_required(op.request), "content": {
            "application/json": {"schema": schemas.of(op.request, "validation")}}}
    responses = {str(status): _answer(op, schemas, status) for status in op.answer_statuses}
    public = endpoint in PUBLIC_ENDPOINTS
    errors = sorted(set(op.errors) | ({401} if auth else set()))
    # 400 for any route that validates its query or path, 401 with keys
    if op.query is not None or op.path is not None or op.request is not None:
        errors = sorted(set(errors) | {400})
    for status in errors:
        if str(status) not in responses:
            responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    out["responses"] = responses
    if auth and public:
        out["security"] = [{}, {"bearer": []}, {"apiKey": []}]  # the key is optional here
    return out


def build_document(rules: Iterable[Rule], *, blueprint: str, auth: bool, title: str,
                   version: str, description: str, root_path: str = "") -> dict[str, Any]:
    """The document for ``rules`` (an app's url_map) as seen by ``blueprint``'s server.

    A rule of the blueprint without a row is still listed, marked ``x-undocumented``; the
    test suite refuses that state (``undocumented_rules``).
    """
    mine = documented_rules(rules, blueprint)
    rows = {rule.endpoint: find_op(bare_endpoint(rule.endpoint)) for rule in mine}
    schemas = _Schemas(row[1] for row in rows.values() if row is not None)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(mine, key=lambda r: (r.rule, r.endpoint)):
        endpoint = bare_endpoint(rule.endpoint)
        row = rows[rule.endpoint]
        item = paths.setdefault(openapi_path(rule), {})
        for method in _methods(rule):
            if row is None:
                item[method.lower()] = {"operationId": endpoint, "summary": "(undocumented)",
                                        "x-undocumented": True,
                                        "responses": {"default": {"description": "any"}}}
            else:
                guarded = auth and rule.endpoint.startswith(blueprint + ".")
                item[method.lower()] = _operation(endpoint, row[0], row[1], rule, schemas,
                                                  guarded)
                if auth and not guarded:
                    item[method.lower()]["security"] = []  # no key asked
    error_ref = schemas.of(ErrorResponse, "serialization")
    components: dict[str, Any] = {
        "schemas": dict(sorted(schemas.components.items())),
        "responses": {f"Error{status}": {"description": text, "content": {
            "application/json": {"schema": error_ref}}} for status, text in _ERRORS.items()},
    }
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "tags": [{"name": name} for name in sorted({r[1].tag for r in rows.values() if r})],
        "paths": paths,
        "components": components,
    }
    if root_path:
        doc["servers"] = [{"url": root_path}]
    if auth:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "Authorization: Bearer KEY (--api-key)"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
        }
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    return doc
