"""Text that cannot be encoded (a lone surrogate from a JSON ``\\ud800`` escape) is a 400 at the
edge, wherever it appears; it never reaches the tokenizer or the engine's thread."""

from __future__ import annotations

import json

import httpx
import pytest
from server_helpers import error_of

LONE = "\ud800"
GREEDY = {"prompt": "The capital of France is", "n_predict": 8, "temperature": 0,
          "cache_prompt": False}

CASES = [
    ("/completion", {"prompt": "hi", "n_predict": 2, "system_prompt": LONE}, "system_prompt"),
    ("/completion", {"prompt": "hi", "n_predict": 2,
                     "system_prompt": {"prompt": LONE, "anti_prompt": "User:"}},
     "system_prompt.prompt"),
    ("/completion", {"prompt": "hi" + LONE, "n_predict": 2}, "prompt"),
    ("/completion", {"prompt": ["hi", LONE], "n_predict": 2}, "prompt.1"),
    ("/completion", {"prompt": "hi", "n_predict": 2, "stop": [LONE]}, "stop.0"),
    ("/completion", {"prompt": "hi", "n_predict": 2, "penalty_prompt": LONE}, "penalty_prompt"),
    ("/completion", {"prompt": "hi", "n_predict": 2, "dry_sequence_breakers": [LONE]},
     "dry_sequence_breakers.0"),
    ("/completion", {"prompt": "hi", "n_predict": 2, "logit_bias": {LONE: 1.0}}, "logit_bias"),
    ("/completion", {"prompt": "hi", "n_predict": 2,
                     "json_schema": {"type": "object", "properties": {LONE: {"type": "string"}}}},
     "json_schema.properties"),
    ("/props", {"system_prompt": LONE}, "system_prompt"),
    ("/tokenize", {"content": LONE}, "content"),
    ("/apply-template", {"messages": [{"role": "user", "content": LONE}]}, "messages.0.content"),
    ("/v1/chat/completions", {"model": LONE, "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": 2}, "model"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                              "response_format": {"type": "json_schema", "json_schema": {
                                  "schema": {"enum": ["a", LONE]}}}},
     "response_format.json_schema.schema.enum.1"),
    ("/v1/embeddings", {"model": LONE, "input": "hi"}, "model"),
]


@pytest.fixture(scope="module")
def usual_answer(client: httpx.Client) -> str:
    r = client.post("/completion", json=GREEDY)
    assert r.status_code == 200, r.text
    return r.json()["content"]


@pytest.mark.parametrize("path,body,field", CASES, ids=[f"{p}:{f}" for p, _, f in CASES])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_lone_surrogate_is_400(client: httpx.Client, usual_answer: str, path: str, body: dict,
                               field: str, stream: bool) -> None:
    body = {**body, "stream": True} if stream and path != "/props" else body
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape \ud800
    assert "\\ud800" in raw
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    message = error_of(r, 400, "invalid_request_error")["message"]
    assert f"'{field}'" in message and "surrogate" in message
    # the engine is untouched: health answers, and a normal request gets its usual answer
    assert client.get("/health").status_code == 200
    again = client.post("/completion", json=GREEDY)
    assert again.status_code == 200 and again.json()["content"] == usual_answer
