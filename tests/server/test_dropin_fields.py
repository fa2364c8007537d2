"""Fields that today's llama-server clients rely on, next to the seed's (issue: drop-in)."""

from __future__ import annotations

import httpx
from server_helpers import error_of, running_server, sse_events

PROMPT = "The capital of France is"


def test_return_progress_reports_prompt_processing(client: httpx.Client) -> None:
    body = {"prompt": PROMPT * 20, "n_predict": 2, "stream": True, "return_progress": True,
            "cache_prompt": False, "temperature": 0}
    events = [e for e in sse_events(client.post("/completion", json=body).text)]
    progress = [e["prompt_progress"] for e in events if "prompt_progress" in e]
    assert progress, "no prompt_progress events"
    total = progress[0]["total"]
    assert total == len(client.post("/tokenize", json={"content": PROMPT * 20,
                                                       "add_special": True}).json()["tokens"])
    processed = [p["processed"] for p in progress]
    assert processed == sorted(processed) and processed[-1] == total
    assert all(p["cache"] == 0 and p["time_ms"] >= 0 for p in progress)
    # progress comes before the first token, and the text is unchanged by it
    first_text = next(i for i, e in enumerate(events) if e.get("content"))
    assert max(i for i, e in enumerate(events) if "prompt_progress" in e) < first_text
    plain = client.post("/completion", json={**body, "stream": False}).json()
    assert "".join(e["content"] for e in events) == plain["content"]


def test_return_progress_in_chat_stream(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 2,
            "stream": True, "return_progress": True}
    chunks = [e for e in sse_events(client.post("/v1/chat/completions", json=body).text)
              if e != "[DONE]"]
    with_progress = [c for c in chunks if "prompt_progress" in c]
    assert with_progress and with_progress[-1]["prompt_progress"]["processed"] == \
        with_progress[-1]["prompt_progress"]["total"]
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in with_progress)


def test_timings_per_token(client: httpx.Client) -> None:
    body = {"prompt": PROMPT, "n_predict": 4, "stream": True, "timings_per_token": True,
            "temperature": 0}
    partial = [e for e in sse_events(client.post("/completion", json=body).text)
               if not e["stop"]]
    assert partial and all("timings" in e for e in partial)
    counts = [e["timings"]["predicted_n"] for e in partial]
    assert counts == sorted(counts) and counts[-1] >= 1
    assert {"cache_n", "prompt_n", "prompt_ms", "predicted_ms"} <= set(partial[0]["timings"])
    without = [e for e in sse_events(client.post(
        "/completion", json={**body, "timings_per_token": False}).text) if not e["stop"]]
    assert not any("timings" in e for e in without)


HI = {"role": "user", "content": "Hi"}


def test_assistant_prefill_is_continued(client: httpx.Client) -> None:
    prefill = {"role": "assistant", "content": "Hello, my name"}
    body = {"messages": [HI, prefill], "max_tokens": 5, "temperature": 0}
    answer = client.post("/v1/chat/completions", json=body).json()
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("Hello, my name") and len(content) > len("Hello, my name")
    # the prompt ends inside the assistant's turn, with the prefilled text
    prompt = client.post("/apply-template", json={"messages": [HI, prefill]}).json()["prompt"]
    assert prompt.endswith("assistant\nHello, my name")
    # the same continuation through the raw prompt gives the same tokens
    raw = client.post("/completion", json={"prompt": prompt, "n_predict": 5, "temperature": 0,
                                           "cache_prompt": False}).json()["content"]
    assert content == "Hello, my name" + raw
    streamed = [e for e in sse_events(client.post("/v1/chat/completions",
                                                  json={**body, "stream": True}).text)
                if e != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed)
    assert text == content


def test_continuation_rules(client: httpx.Client) -> None:
    two = {"messages": [HI, {"role": "assistant", "content": "a"},
                        {"role": "assistant", "content": "b"}], "max_tokens": 1}
    error_of(client.post("/v1/chat/completions", json=two), 400, "invalid_request_error")
    both = {"messages": [HI, {"role": "assistant", "content": "a"}], "max_tokens": 1,
            "continue_final_message": True}
    message = error_of(client.post("/v1/chat/completions", json=both), 400,
                       "invalid_request_error")["message"]
    assert "add_generation_prompt" in message
    ok = client.post("/v1/chat/completions", json={**both, "add_generation_prompt": False})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"].startswith("a")
    not_assistant = {"messages": [HI], "continue_final_message": True,
                     "add_generation_prompt": False, "max_tokens": 1}
    error_of(client.post("/v1/chat/completions", json=not_assistant), 400,
             "invalid_request_error")
    error_of(client.post("/v1/chat/completions", json={**not_assistant,
                                                       "continue_final_message": "nope"}),
             400, "invalid_request_error")
    # without a final assistant message and without a generation prompt: as rendered
    plain = client.post("/apply-template", json={"messages": [HI],
                                                 "add_generation_prompt": False}).json()
    assert not plain["prompt"].rstrip().endswith("assistant")


def test_prompt_longer_than_the_context(client: httpx.Client) -> None:
    from server_helpers import error_of

    words = "word " * 1500  # a slot of the session server holds 1024 tokens
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user",
                                                                "content": words}],
                                                  "max_tokens": 2})
    error = error_of(r, 400, "exceed_context_size_error")
    assert error["n_ctx"] == 1024 and error["n_prompt_tokens"] > 1500
    r = client.post("/v1/completions", json={"prompt": words, "max_tokens": 2})
    assert error_of(r, 400, "exceed_context_size_error")["n_prompt_tokens"] > 1500
    # the seed's /completion truncates instead
    seed = client.post("/completion", json={"prompt": words, "n_predict": 2}).json()
    assert seed["truncated"] and seed["tokens_evaluated"] < 1024


def test_overlong_prompt_flag_chooses_the_rule_for_every_endpoint() -> None:
    words = "word " * 400  # a slot holds 256 tokens
    with running_server(ctx_size=256, parallel=1, threads=1, overlong_prompt="error") as srv:
        r = httpx.post(srv.url + "/completion", json={"prompt": words, "n_predict": 2},
                       timeout=60)
        assert error_of(r, 400, "exceed_context_size_error")["n_ctx"] == 256
    with running_server(ctx_size=256, parallel=1, threads=1, overlong_prompt="truncate") as srv:
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": words, "max_tokens": 2},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] < 256


def test_several_prompts_give_one_result_each(client: httpx.Client) -> None:
    greedy = {"n_predict": 4, "temperature": 0, "cache_prompt": False}
    prompts = ["The capital of France is", "One, two, three,"]

    def alone(prompt) -> str:
        return client.post("/completion", json={"prompt": prompt, **greedy}).json()["content"]

    ids = client.post("/tokenize", json={"content": prompts[1], "add_special": True}).json()[
        "tokens"]
    several = client.post("/completion", json={"prompt": [prompts[0], ids,
                                                          {"prompt_string": prompts[0]}],
                                               **greedy}).json()
    assert isinstance(several, list) and [r["index"] for r in several] == [0, 1, 2]
    assert [r["content"] for r in several] == [alone(prompts[0]), alone(ids), alone(prompts[0])]
    # an array with a token id at its top level is one mixed prompt, as before
    mixed = client.post("/completion", json={"prompt": ["The capital", *ids[1:]], **greedy})
    assert isinstance(mixed.json(), dict)
    # streamed: interleaved events, each with its index, each prompt ends once
    events = [e for e in sse_events(client.post("/completion", json={
        "prompt": prompts, "stream": True, **greedy}).text)]
    for i, prompt in enumerate(prompts):
        mine = [e for e in events if e["index"] == i]
        assert sum(e["stop"] for e in mine) == 1 and mine[-1]["stop"]
        assert "".join(e["content"] for e in mine) == alone(prompt)
    # n_cmpl: n completions per prompt
    two = client.post("/completion", json={"prompt": prompts[0], "n_cmpl": 2, **greedy}).json()
    assert len(two) == 2 and two[0]["content"] == two[1]["content"] == alone(prompts[0])


def test_models_props_slots_and_metrics_carry_todays_fields(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    entry = models["data"][0]
    assert entry["aliases"] == [entry["id"]] and entry["tags"] == []
    assert {"n_ctx", "ftype", "n_vocab", "n_params"} <= set(entry["meta"])
    assert models["models"][0]["model"] == entry["id"]
    props = client.get("/props").json()
    settings = props["default_generation_settings"]
    assert settings["params"]["temperature"] == settings["temperature"]  # today's and the seed's
    assert settings["is_processing"] is False and "next_token" in settings
    assert {"model_alias", "build_info", "modalities", "chat_template_caps", "total_slots",
            "endpoint_slots", "model_ftype", "bos_token", "eos_token"} <= set(props)
    slot = client.get("/slots").json()[0]
    assert {"params", "speculative", "n_prompt_tokens", "n_prompt_tokens_cache",
            "next_token", "id_task", "temperature"} <= set(slot)
    metrics = client.get("/metrics")
    assert int(metrics.headers["Process-Start-Time-Unix"]) > 0
    for name in ("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total",
                 "llamacpp:n_tokens_max", "llamacpp:spec_decode_num_drafts_total",
                 "llamacpp:tokens_predicted_total", "llamacpp:n_busy_slots_per_decode"):
        assert f"\n{name} " in metrics.text, name


def test_chat_input_tokens_counts_the_prompt_that_runs(client: httpx.Client) -> None:
    body = {"messages": [{"role": "system", "content": "Be brief."}, HI]}
    counted = client.post("/v1/chat/completions/input_tokens", json=body)
    assert counted.status_code == 200, counted.text
    assert counted.json()["object"] == "response.input_tokens"
    ran = client.post("/v1/chat/completions", json={**body, "max_tokens": 1}).json()
    assert counted.json()["input_tokens"] == ran["usage"]["prompt_tokens"]
    bare = client.post("/chat/completions/input_tokens", json=body).json()
    assert bare["input_tokens"] == counted.json()["input_tokens"]
    error_of(client.post("/v1/chat/completions/input_tokens", json={"messages": 5}), 400,
             "invalid_request_error")
