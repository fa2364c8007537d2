"""Per-token probabilities are keyed by token id: two candidates with the same text (here two
control tokens, both rendered as "") keep their own probabilities in every shape."""

from __future__ import annotations

import math

import httpx
import pytest

# <file_sep> and <filename>: control tokens of SmolLM2, not end-of-generation, both "" as text
SAME_TEXT = (5, 6)
# A huge bias puts both far above every other token; a high temperature (the only stage)
# brings their own two probabilities close enough that either gets sampled.
BIAS = [[SAME_TEXT[0], 500.0], [SAME_TEXT[1], 500.0]]
SAMPLING = {"temperature": 20.0, "samplers": ["temperature"], "seed": 3}


def _own(candidates: list[dict], key: str, tok: int) -> float:
    return next(c[key] for c in candidates if c["id"] == tok)


def test_seed_shape_keeps_each_candidates_probability(client: httpx.Client) -> None:
    body = {"prompt": "Hello", "n_predict": 8, "n_probs": 2, "logit_bias": BIAS, **SAMPLING}
    entries = client.post("/completion", json=body).json()["completion_probabilities"]
    assert len(entries) == 8
    chose_less_likely = False
    for entry in entries:
        assert entry["id"] in SAME_TEXT and entry["content"] == entry["token"] == ""
        candidates = entry["probs"]
        assert {c["id"] for c in candidates} == set(SAME_TEXT)
        assert [c["tok_str"] for c in candidates] == ["", ""]
        first, second = (c["prob"] for c in candidates)
        assert first > second > 0  # different probabilities behind the same text
        own = _own(candidates, "prob", entry["id"])
        assert math.exp(entry["logprob"]) == pytest.approx(own, rel=1e-5)
        assert _own(entry["top_logprobs"], "logprob", entry["id"]) == pytest.approx(
            entry["logprob"], rel=1e-6)
        chose_less_likely |= own == second
    assert chose_less_likely  # the case a text-keyed lookup gets wrong


def test_openai_chat_logprobs_keep_each_candidates_probability(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8,
            "logprobs": True, "top_logprobs": 2, "logit_bias": {str(t): b for t, b in BIAS},
            **SAMPLING}
    content = client.post("/v1/chat/completions", json=body).json()["choices"][0][
        "logprobs"]["content"]
    assert len(content) == 8
    chose_less_likely = False
    for entry in content:
        top = entry["top_logprobs"]
        assert [t["token"] for t in top] == ["", ""] and top[0]["logprob"] > top[1]["logprob"]
        assert entry["logprob"] == pytest.approx(_own(top, "logprob", entry["id"]), rel=1e-6)
        chose_less_likely |= entry["id"] == top[1]["id"]
    assert chose_less_likely
