"""JSON Schema -> GBNF: every grammar must parse in libllama, and constrain generation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from llama_ffi import Model, SamplerChain, SamplerParams, default_model_path
from llamaserver._json_grammar import JSON_GRAMMAR, SchemaError, schema_to_grammar

SCHEMAS = [
    {},
    True,
    {"type": "object"},
    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0},
                                      "b": {"type": ["string", "null"]},
                                      "c": {"enum": ["x", 1, None]}},
     "required": ["a"]},
    {"type": "object", "properties": {"o1": {"const": 5}, "o2": {"type": "boolean"}}},
    {"type": "object", "properties": {"k": {"type": "number"}},
     "additionalProperties": {"type": "string"}},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "minLength": 2, "maxLength": 5},
    {"anyOf": [{"type": "integer"}, {"type": "string", "format": "date"}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
               {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
    {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/node"},
                                                         {"type": "null"}]}}}},
     "$ref": "#/$defs/node"},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    {"type": "object", "properties": {"weird key \"q\"\n": {"type": "string"}}},
]


@pytest.fixture(scope="module")
def vocab_model() -> Iterator[Model]:
    with Model(default_model_path(), vocab_only=True) as model:
        yield model


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_grammar_parses_in_libllama(vocab_model: Model, schema: object) -> None:
    grammar = schema_to_grammar(schema)
    assert grammar.startswith("root ::= ")
    SamplerChain(vocab_model, SamplerParams(grammar=grammar)).close()


def test_json_object_grammar_parses(vocab_model: Model) -> None:
    SamplerChain(vocab_model, SamplerParams(grammar=JSON_GRAMMAR)).close()


@pytest.mark.parametrize("schema", [
    False, {"type": "frobnicate"}, {"$ref": "https://example.com/s.json"},
    {"$ref": "#/$defs/missing"}, {"type": "string", "pattern": "a+"}, {"enum": []},
    {"type": "array", "minItems": 5, "maxItems": 2}, {"allOf": [{"type": "string"}]}, 5,
    {"type": "string", "maxLength": 2.5}, {"type": "array", "minItems": True},
    {"type": "object", "properties": {"a": {}}, "required": "a"},
    {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}},
    {"enum": [f"value {i}" for i in range(100_000)]},
])
def test_unsupported_schemas_raise(schema: object) -> None:
    with pytest.raises(SchemaError):
        schema_to_grammar(schema)


def _optional_properties(n: int) -> dict[str, object]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


def test_optional_properties_make_a_grammar_of_linear_size(vocab_model: Model) -> None:
    # each optional member used to repeat every later one: 2,000 made a 60 MB grammar
    small, large = (schema_to_grammar(_optional_properties(n)) for n in (200, 2000))
    assert len(large) < 12 * len(small) and len(large) < 1 << 20
    SamplerChain(vocab_model, SamplerParams(grammar=large)).close()
    with pytest.raises(SchemaError, match="larger than"):
        schema_to_grammar(_optional_properties(50_000))


def test_generation_follows_the_schema(client: httpx.Client) -> None:
    schema = {"type": "object",
              "properties": {"colors": {"type": "array", "items": {"enum": ["red", "blue"]},
                                        "minItems": 2, "maxItems": 2},
                             "count": {"type": "integer", "minimum": 0}},
              "required": ["colors", "count"], "additionalProperties": False}
    body = client.post("/completion", json={"prompt": "JSON with two colors:",
                                            "json_schema": schema, "n_predict": 48,
                                            "temperature": 0}).json()
    value = json.loads(body["content"])
    assert set(value) == {"colors", "count"}
    assert len(value["colors"]) == 2 and set(value["colors"]) <= {"red", "blue"}
    assert isinstance(value["count"], int) and value["count"] >= 0
