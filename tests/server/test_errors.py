"""Bad input gets a 400 in llama.cpp's error shape, never a crash, a hang or a 500."""

from __future__ import annotations

import httpx
import pytest
from server_helpers import PARALLEL, error_of

BAD = "invalid_request_error"


@pytest.mark.parametrize("raw", [
    b"{bad json", b"[1, 2", b'{"prompt": "x",}', b"\xff\xfe{}", b'"just a string"',
    b"[1, 2, 3]",
])
def test_malformed_json(client: httpx.Client, raw: bytes) -> None:
    error_of(client.post("/completion", content=raw,
                         headers={"Content-Type": "application/json"}), 400, BAD)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers(client: httpx.Client, number: bytes) -> None:
    raw = b'{"prompt": "x", "n_predict": 1, "temperature": ' + number + b"}"
    error_of(client.post("/completion", content=raw), 400, BAD)


def test_deep_nesting(client: httpx.Client) -> None:
    for depth in (100, 100_000):
        raw = b'{"prompt": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}"
        error_of(client.post("/completion", content=raw), 400, BAD)


@pytest.mark.parametrize("body", [
    {"prompt": 123},
    {"prompt": None},
    {"prompt": [[1, 2.5]]},
    {"prompt": [{"text": "no prompt_string"}]},
    {"prompt": []},
    {"prompt": ["a", []]},
    {"prompt": {"prompt_string": 5}},
    {"prompt": "x", "n_cmpl": 0},
    {"prompt": "x", "n_predict": "8"},
    {"prompt": "x", "n_predict": 1.5},
    {"prompt": "x", "n_predict": True},
    {"prompt": "x", "temperature": "hot"},
    {"prompt": "x", "stream": "yes"},
    {"prompt": "x", "stop": [1]},
    {"prompt": "x", "top_k": 2**40},
    {"prompt": "x", "mirostat": 3},
    {"prompt": "x", "n_probs": -1},
    {"prompt": "x", "samplers": ["bogus"]},
    {"prompt": "x", "logit_bias": [[1]]},
    {"prompt": "x", "logit_bias": [[1, "high"]]},
    {"prompt": "x", "seed": "42"},
    {"prompt": "x", "penalty_prompt": {"a": 1}},
    {"prompt": "x", "repeat_penalty": 0},
    {"temperature": 0.5},
])
def test_wrong_types_and_ranges(client: httpx.Client, body: dict) -> None:
    error_of(client.post("/completion", json=body), 400, BAD)


def test_integral_floats_are_accepted_as_integers(client: httpx.Client) -> None:
    r = client.post("/completion", json={"prompt": "x", "n_predict": 2.0, "top_k": 40.0})
    assert r.status_code == 200 and r.json()["tokens_predicted"] <= 2


@pytest.mark.parametrize("id_slot", [PARALLEL, 10**6, -2])
def test_out_of_range_id_slot(client: httpx.Client, id_slot: int) -> None:
    error = error_of(client.post("/completion", json={"prompt": "x", "id_slot": id_slot}),
                     400, BAD)
    assert "slot" in error["message"]


@pytest.mark.parametrize("body", [
    {"prompt": [1, 49152]},
    {"prompt": [-5]},
    {"prompt": ["text", 10**12]},
    {"prompt": "x", "logit_bias": [[10**9, 1.0]]},
    {"prompt": "x", "logit_bias": {"-3": 1.0}},
    {"prompt": "x", "penalty_prompt": [1, 10**9]},
])
def test_invalid_token_ids(client: httpx.Client, body: dict) -> None:
    error_of(client.post("/completion", json=body), 400, BAD)


@pytest.mark.parametrize("grammar", ["root ::= undefined_rule", "root ::= (", "not a grammar",
                                     "root ::= [a-", 'root ::= "unterminated'])
def test_bad_grammar(client: httpx.Client, grammar: str) -> None:
    error_of(client.post("/completion", json={"prompt": "x", "grammar": grammar}), 400, BAD)


def test_grammar_left_without_tokens_is_400(client: httpx.Client) -> None:
    # parses (so it passes the pre-check), then bans its only token: found on the worker
    x = client.post("/tokenize", json={"content": "x"}).json()["tokens"]
    body = {"prompt": "x", "grammar": 'root ::= "x"', "logit_bias": [[x[0], False]],
            "n_predict": 2, "temperature": 0}
    message = error_of(client.post("/completion", json=body), 400, BAD)["message"]
    assert "grammar" in message


def test_grammar_and_schema_together(client: httpx.Client) -> None:
    error_of(client.post("/completion", json={"prompt": "x", "grammar": 'root ::= "a"',
                                              "json_schema": {}}), 400, BAD)


def test_unsupported_schema(client: httpx.Client) -> None:
    error_of(client.post("/completion", json={"prompt": "x", "json_schema": {
        "type": "string", "pattern": "^a+$"}}), 400, BAD)


def test_image_data_needs_a_projector(client: httpx.Client) -> None:
    error = error_of(client.post("/completion", json={"prompt": "[img-1] x", "image_data": [
        {"data": "aGVsbG8=", "id": 1}]}), 400, BAD)
    assert "--mmproj" in error["message"]


def test_tokenize_errors(client: httpx.Client) -> None:
    error_of(client.post("/tokenize", json={}), 400, BAD)
    error_of(client.post("/tokenize", json={"content": 5}), 400, BAD)
    error_of(client.post("/tokenize", json={"content": [1, 10**9]}), 400, BAD)


def test_server_still_healthy_after_all_that(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    r = client.post("/completion", json={"prompt": "Still alive?", "n_predict": 2})
    assert r.status_code == 200
