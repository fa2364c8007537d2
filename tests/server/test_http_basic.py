"""Shapes of the state and tokenizer endpoints on the session's server."""

from __future__ import annotations

import httpx
from server_helpers import MODEL_ALIAS, PARALLEL, Running, error_of

from llama_ffi import default_model_path


def test_health_ok(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] in ("ok", "no slot available")
    assert body["slots_idle"] + body["slots_processing"] == PARALLEL
    assert "slots" not in body


def test_health_include_slots(client: httpx.Client) -> None:
    body = client.get("/health", params={"include_slots": "1"}).json()
    assert len(body["slots"]) == PARALLEL
    assert [s["id"] for s in body["slots"]] == list(range(PARALLEL))


def test_health_fail_on_no_slot_is_200_while_slots_are_idle(client: httpx.Client) -> None:
    assert client.get("/health?fail_on_no_slot").status_code == 200


def test_props(client: httpx.Client) -> None:
    body = client.get("/props").json()
    assert body["total_slots"] == PARALLEL
    assert {"user_name", "assistant_name", "system_prompt", "chat_template",
            "build_info"} <= body.keys()
    settings = body["default_generation_settings"]
    assert settings["n_ctx"] > 0 and "temperature" in settings and "samplers" in settings
    assert body["model_path"] == str(default_model_path())
    assert "im_start" in body["chat_template"]  # SmolLM2's ChatML template


def test_models(client: httpx.Client, main: Running) -> None:
    model = main.server.engine.model
    for path in ("/v1/models", "/models"):
        body = client.get(path).json()
        assert body["object"] == "list"
        (entry,) = body["data"]
        assert entry["id"] == MODEL_ALIAS and entry["object"] == "model"
        assert entry["owned_by"] == "llamacpp"
        assert entry["meta"]["n_vocab"] == model.vocab.n_tokens
        assert entry["meta"]["n_ctx_train"] == model.n_ctx_train
        assert entry["meta"]["n_params"] == model.n_params


def test_tokenize_and_detokenize_round_trip(client: httpx.Client, main: Running) -> None:
    text = "Hello world, this is llama.cpp!"
    tokens = client.post("/tokenize", json={"content": text}).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    vocab = main.server.engine.vocab
    assert tokens == vocab.tokenize(text, add_special=False, parse_special=True)
    assert client.post("/detokenize", json={"tokens": tokens}).json() == {"content": text}


def test_tokenize_with_pieces_gives_bytes_for_partial_utf8(client: httpx.Client) -> None:
    body = client.post("/tokenize", json={"content": "Hello 🦙", "with_pieces": True}).json()
    pieces = body["tokens"]
    assert pieces[0] == {"id": pieces[0]["id"], "piece": "Hello"}
    joined = b""
    for entry in pieces:
        piece = entry["piece"]
        assert isinstance(piece, (str, list))
        joined += piece.encode() if isinstance(piece, str) else bytes(piece)
    assert joined.decode() == "Hello 🦙"
    assert any(isinstance(e["piece"], list) for e in pieces)  # the emoji spans tokens


def test_tokenize_special_tokens(client: httpx.Client) -> None:
    parsed = client.post("/tokenize", json={"content": "<|im_start|>"}).json()["tokens"]
    literal = client.post("/tokenize", json={"content": "<|im_start|>",
                                             "parse_special": False}).json()["tokens"]
    assert len(parsed) == 1 and len(literal) > 1


def test_detokenize_rejects_invalid_ids(client: httpx.Client) -> None:
    error_of(client.post("/detokenize", json={"tokens": [1, 10**9]}), 400,
             "invalid_request_error")
    error_of(client.post("/detokenize", json={"tokens": [-1]}), 400, "invalid_request_error")
    error_of(client.post("/detokenize", json={"tokens": ["a"]}), 400, "invalid_request_error")


def test_metrics(client: httpx.Client) -> None:
    client.post("/completion", json={"prompt": "Metrics", "n_predict": 2})
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = {line.split(" ")[0]: float(line.split(" ")[1])
             for line in r.text.splitlines() if line and not line.startswith("#")}
    assert lines["llamacpp:prompt_tokens_total"] > 0
    assert lines["llamacpp:tokens_predicted_total"] > 0
    assert "llamacpp:kv_cache_usage_ratio" in lines
    assert "llamacpp:requests_processing" in lines
    # the engine's step accounting: generation-only steps are counted and decode is inside them
    assert lines["llamacpp:engine_gen_step_seconds_total"] > 0
    assert 0 < lines["llamacpp:engine_gen_decode_seconds_total"] <= lines["llamacpp:engine_gen_step_seconds_total"]
    assert lines["llamacpp:engine_decode_seconds_total"] <= lines["llamacpp:engine_step_seconds_total"]


def test_unknown_route_is_a_json_404(client: httpx.Client) -> None:
    error_of(client.get("/no/such/route"), 404, "not_found_error")


def test_wrong_method_is_a_json_405(client: httpx.Client) -> None:
    assert client.get("/completion").status_code == 405
    assert client.get("/completion").json()["error"]["code"] == 405
