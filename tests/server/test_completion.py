"""POST /completion: non-streaming, streaming, options, disconnects."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest
from server_helpers import PARALLEL, Running, sse_events

PROMPT = "The capital of France is"


def complete(client: httpx.Client, **body: object) -> dict:
    r = client.post("/completion", json={"prompt": PROMPT, "n_predict": 8, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_non_streaming_shape(client: httpx.Client) -> None:
    body = complete(client, temperature=0)
    for key in ("content", "stop", "model", "generation_settings", "prompt", "stopped_eos",
                "stopped_limit", "stopped_word", "stopping_word", "timings", "tokens_cached",
                "tokens_evaluated", "truncated", "tokens_predicted", "id_slot"):
        assert key in body, key
    assert body["stop"] is True
    assert isinstance(body["content"], str) and body["content"]
    assert body["prompt"] == PROMPT
    assert body["stopped_limit"] and body["tokens_predicted"] == 8
    assert 0 <= body["id_slot"] < PARALLEL
    assert body["generation_settings"]["temperature"] == 0
    assert body["generation_settings"]["n_predict"] == 8
    assert body["timings"]["predicted_n"] == 8
    assert "completion_probabilities" not in body


def test_greedy_is_deterministic_and_paris(client: httpx.Client) -> None:
    first = complete(client, temperature=0, cache_prompt=False)["content"]
    second = complete(client, temperature=0)["content"]
    assert first == second
    assert "Paris" in first


def test_prompt_as_tokens_and_mix(client: httpx.Client) -> None:
    tokens = client.post("/tokenize", json={"content": PROMPT}).json()["tokens"]
    by_text = complete(client, temperature=0)["content"]
    assert complete(client, prompt=tokens, temperature=0)["content"] == by_text
    mixed = tokens[:2] + [client.post("/detokenize", json={"tokens": tokens[2:]}).json()[
        "content"]]
    assert complete(client, prompt=mixed, temperature=0)["content"] == by_text


def test_stop_word(client: httpx.Client) -> None:
    greedy = complete(client, temperature=0, n_predict=16)["content"]
    word = greedy.strip().split()[1] if len(greedy.split()) > 1 else "."
    body = complete(client, temperature=0, n_predict=16, stop=[word])
    assert body["stopped_word"] and body["stopping_word"] == word
    assert word not in body["content"]
    assert greedy.startswith(body["content"])


def test_n_probs(client: httpx.Client) -> None:
    body = complete(client, n_probs=3, n_predict=4, temperature=0)
    probs = body["completion_probabilities"]
    assert len(probs) == 4
    for entry in probs:
        assert isinstance(entry["content"], str)
        assert 1 <= len(entry["probs"]) <= 3
        for p in entry["probs"]:
            assert isinstance(p["tok_str"], str) and 0.0 <= p["prob"] <= 1.0


def test_logit_bias_false_bans_a_token(client: httpx.Client) -> None:
    greedy = complete(client, temperature=0, n_predict=1, return_tokens=True)
    banned = greedy["tokens"][0]
    for bias in ([[banned, False]], {str(banned): False}):
        body = complete(client, temperature=0, n_predict=1, return_tokens=True,
                        logit_bias=bias)
        assert body["tokens"][0] != banned


def test_logit_bias_string_form(client: httpx.Client) -> None:
    body = complete(client, temperature=0, n_predict=1, logit_bias=[[" Paris", False]])
    assert "Paris" not in body["content"]


def test_grammar_constrains_output(client: httpx.Client) -> None:
    body = complete(client, grammar='root ::= ("yes" | "no")', n_predict=4)
    assert body["content"] in ("yes", "no")


def test_json_schema_output_parses(client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
              "required": ["city"]}
    body = complete(client, prompt="Answer in JSON. Capital of France:", json_schema=schema,
                    n_predict=32, temperature=0)
    value = json.loads(body["content"])
    assert isinstance(value["city"], str)


def test_samplers_order_and_seed_reproducibility(client: httpx.Client) -> None:
    opts = {"samplers": ["top_k", "tfs_z", "typical_p", "top_p", "min_p", "temperature"],
            "seed": 1234, "temperature": 1.0, "tfs_z": 0.9, "n_predict": 6,
            "cache_prompt": False}
    a = complete(client, **opts)
    b = complete(client, **opts)
    assert a["content"] == b["content"]
    assert a["generation_settings"]["seed"] == 1234
    assert complete(client, samplers="kt", seed=3, n_predict=2)["stop"] is True


def test_penalties_options_are_accepted(client: httpx.Client) -> None:
    body = complete(client, repeat_penalty=1.3, repeat_last_n=-1, penalize_nl=True,
                    presence_penalty=0.5, frequency_penalty=0.5, penalty_prompt="Paris",
                    mirostat=2, mirostat_tau=4.0, mirostat_eta=0.2, dynatemp_range=0.5,
                    xtc_probability=0.5, xtc_threshold=0.2, dry_multiplier=0.8,
                    top_n_sigma=1.5, min_keep=1, ignore_eos=True, n_keep=-1)
    assert body["tokens_predicted"] == 8
    assert body["generation_settings"]["mirostat"] == 2


def test_n_predict_zero_only_evaluates_the_prompt(client: httpx.Client) -> None:
    body = complete(client, n_predict=0)
    assert body["content"] == "" and body["tokens_predicted"] == 0


def test_id_slot_is_honoured(client: httpx.Client) -> None:
    assert complete(client, id_slot=PARALLEL - 1, n_predict=1)["id_slot"] == PARALLEL - 1


def test_prompt_cache_is_reused(client: httpx.Client) -> None:
    prompt = "Caching test: a long shared prefix for this request, " * 4
    complete(client, prompt=prompt, id_slot=1, n_predict=1)
    again = complete(client, prompt=prompt + "and more", id_slot=1, n_predict=1)
    assert again["tokens_cached"] > 10


def test_streaming(client: httpx.Client) -> None:
    r = client.post("/completion", json={"prompt": PROMPT, "n_predict": 6, "stream": True,
                                         "temperature": 0, "n_probs": 2})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    partial, final = events[:-1], events[-1]
    assert partial and all(e["stop"] is False for e in partial)
    assert all(isinstance(e["content"], str) for e in partial)
    assert all(e["completion_probabilities"] for e in partial)
    assert final["stop"] is True and final["tokens_predicted"] == 6
    assert "timings" in final and "generation_settings" in final
    assert final["generation_settings"]["stream"] is True
    text = "".join(e["content"] for e in partial)
    assert text == complete(client, n_predict=6, temperature=0)["content"]


def test_streaming_never_leaks_a_stop_word(client: httpx.Client) -> None:
    greedy = complete(client, temperature=0, n_predict=12)["content"]
    stop = greedy[3:9]
    r = client.post("/completion", json={"prompt": PROMPT, "n_predict": 12, "stream": True,
                                         "temperature": 0, "stop": [stop]})
    events = sse_events(r.text)
    text = "".join(e["content"] for e in events[:-1])
    assert stop not in text and events[-1]["stopped_word"]
    assert greedy.startswith(text)


def test_client_disconnect_on_a_non_streamed_request(main: Running, base_url: str) -> None:
    # the session server caps n_predict at 64: about a second of generation on a CPU, far
    # longer than the client waits
    body = {"prompt": "Write a very long story about llamas.", "n_predict": 64,
            "ignore_eos": True, "id_slot": 1}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(base_url + "/completion", json=body, timeout=httpx.Timeout(60, read=0.3))
    gave_up = time.perf_counter()
    engine = main.server.engine
    while engine.slots()[1].is_processing:
        assert time.perf_counter() - gave_up < 0.25, "slot still busy 250 ms after the client left"
        time.sleep(0.002)


def test_timings_are_finite(client: httpx.Client) -> None:
    timings = complete(client, n_predict=2)["timings"]
    assert all(v is None or math.isfinite(v) for v in timings.values())


@pytest.mark.parametrize("path", ["/completion", "/completions"])
def test_both_paths(client: httpx.Client, path: str) -> None:
    assert client.post(path, json={"prompt": "Hi", "n_predict": 1}).json()["stop"] is True
