"""The soak's requests: what each kind sends, and how its answer is read and checked.

Every answer is read whole and turned into one comparable value (text, tool calls and why it
stopped; a vector; token ids).  A reading that breaks the protocol (an event after the final
one, a stream without its final event or ``[DONE]``, a line that is not JSON) is ``Garbled``.

A greedy answer under load must equal the same request's answer alone, with one exception
that is arithmetic, not the server: llama.cpp's CPU matrix product computes one row
(``vec_dot``) and several rows (llamafile's ``sgemm``, used from 2 rows up) with other
rounding, so the logits of a sequence decoded alone and of one batched with others differ in
their last bits; so do a prompt decoded in one batch and the same prompt in paced chunks, or a
prefix reused from another slot's cache (its cells were computed in another batch shape).
Those bits pass through the f16 KV cache and 30 layers: measured, the two runs' top candidates
then moved by up to 0.04 in log probability.  Where the answer alone had two candidates within
``NEAR_TIE`` of each other the two runs may part; every token before that point must be the
same.  A server bug reads wrong cells and moves logits by whole units (a stale cell: 25).  Greedy
requests ask for their top candidates (``n_probs``, ``top_logprobs``) so that this can be told.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

PROMPTS = [
    "The history of the printing press begins",
    "Here is a simple recipe for bread:",
    "Ten facts about the planet Mars:\n1.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]
QUESTIONS = ["Name three colours of the rainbow.", "What is the capital of Italy?",
             "Say hello in French."]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city today.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}
NEAR_TIE = 0.05
N_TOP = 5
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the riverbank."] * 90)


class Garbled(Exception):
    """The answer broke the protocol."""


@dataclass(frozen=True)
class Request:
    kind: str
    path: str
    body: dict[str, Any] = field(hash=False)
    stream: bool
    greedy: bool          # its answer must equal the one it gets alone
    nonce: str = ""       # a text in its prompt that /slots shows while a slot serves it

    @property
    def key(self) -> str:
        return json.dumps([self.path, self.body], sort_keys=True)


def _completion(prompt: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "n_predict": n, "stream": True, "cache_prompt": True, **extra}


def _chat(question: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], "max_tokens": n, **extra}


def greedy_requests() -> list[Request]:
    """The fixed requests whose answers are known from running each alone."""
    greedy = {"temperature": 0, "logprobs": True, "top_logprobs": N_TOP}
    out = [Request("complete", "/completion", _completion(p, 16, temperature=0, n_probs=N_TOP),
                   True, True) for p in PROMPTS[:3]]
    out += [Request("chat", "/v1/chat/completions", _chat(q, 16, stream=True, **greedy),
                    True, True) for q in QUESTIONS[:2]]
    out += [Request("tools", "/v1/chat/completions",
                    _chat("What is the weather in Paris?", 40, tools=TOOLS, tool_choice=choice,
                          stream=stream, **greedy), stream, True)
            for choice, stream in (("required", False), ("auto", True))]
    out.append(Request("schema", "/v1/chat/completions", _chat(
        "Describe a person.", 32, **greedy, response_format={
            "type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}),
        False, True))
    out += [Request("embed", "/v1/embeddings", {"input": text}, False, True)
            for text in ("a soak test", QUESTIONS[0])]
    out.append(Request("tokenize", "/tokenize", {"content": LONG_TEXT[:400]}, False, True))
    return out


def sampled_request(rng: random.Random) -> Request:
    body = _completion(rng.choice(PROMPTS), rng.randint(8, 32), temperature=0.9,
                       seed=rng.randrange(1 << 30))
    return Request("sampled", "/completion", body, True, False)


def cut_request(rng: random.Random, nonce: str, point: str) -> Request:
    """A request its client will leave; a long prompt when it should leave during prompt
    processing."""
    marker = f"[{nonce}] "
    if point == "prompt":
        body = _completion(marker + LONG_TEXT, 64, temperature=0.7)
    elif rng.random() < 0.5:
        body = _completion(marker + rng.choice(PROMPTS), 200, temperature=0.7)
    else:
        return Request("cut-chat", "/v1/chat/completions",
                       _chat(marker + rng.choice(QUESTIONS), 200, stream=True,
                             temperature=0.7), True, False, nonce)
    return Request("cut-complete", "/completion", body, True, False, nonce)


# ---- reading answers -----------------------------------------------------------------------

def sse_payloads(lines: list[str]) -> list[Any]:
    out = []
    for line in lines:
        if not line:
            continue
        if not line.startswith("data: "):
            raise Garbled(f"not an SSE data line: {line[:80]!r}")
        data = line[6:]
        try:
            out.append(data if data == "[DONE]" else json.loads(data))
        except ValueError:
            raise Garbled(f"not JSON: {data[:80]!r}") from None
    return out


@dataclass
class Answer:
    value: Any                               # what must be equal
    tokens: list[tuple[int, dict[int, float]]] | None = None  # id, top candidates' logprobs

    def parts_from(self, other: Answer) -> str | None:
        """None when ``other`` (this request under load) gives the same answer, or parts from
        this one only at a near-tie of this one; else where it differs."""
        if same(self.value, other.value):
            return None
        if self.tokens is None or other.tokens is None:
            return "the answers differ"
        for i, ((mine, top), (theirs, _)) in enumerate(zip(self.tokens, other.tokens)):
            if mine != theirs:
                gap = top[mine] - top[theirs] if theirs in top else float("inf")
                return None if gap <= NEAR_TIE else (
                    f"token {i}: {theirs} where alone gave {mine} (log-probability gap {gap:.4f})")
        return "the same tokens, another ending"


def _tokens(entries: list[dict[str, Any]]) -> list[tuple[int, dict[int, float]]]:
    return [(e["id"], {t["id"]: t["logprob"] for t in e.get("top_logprobs", [])})
            for e in entries]


def completion_answer(payloads: list[Any]) -> Answer:
    """The seed's stream: partial events, then exactly one final event, last."""
    text, tokens = [], []
    for i, event in enumerate(payloads):
        if not isinstance(event, dict) or "error" in event:
            raise Garbled(f"error event: {event!r:.200}")
        text.append(event.get("content", ""))
        tokens += _tokens(event.get("completion_probabilities", []))
        if event.get("stop"):
            if i != len(payloads) - 1:
                raise Garbled("events after the final one")
            return Answer("".join(text) + f"\x00{event.get('stop_type')}", tokens)
    raise Garbled("the stream ended without its final event")


def chat_stream_answer(payloads: list[Any]) -> Answer:
    if not payloads or payloads[-1] != "[DONE]":
        raise Garbled("the stream ended without [DONE]")
    text, calls, finish, tokens = [], [], None, []
    for chunk in payloads[:-1]:
        if not isinstance(chunk, dict) or "error" in chunk:
            raise Garbled(f"error chunk: {chunk!r:.200}")
        for choice in chunk.get("choices", []):
            if finish is not None:
                raise Garbled("chunks after the finish_reason")
            delta = choice.get("delta", {})
            text.append(delta.get("content") or "")
            calls += [c.get("function") for c in delta.get("tool_calls", [])]
            tokens += _tokens((choice.get("logprobs") or {}).get("content") or [])
            finish = choice.get("finish_reason") or finish
    if finish is None:
        raise Garbled("no finish_reason")
    return Answer("".join(text) + "\x00" + json.dumps(calls) + f"\x00{finish}", tokens or None)


def json_answer(request: Request, payload: Any) -> Answer:
    """A non-streamed answer."""
    if request.kind == "embed":
        return Answer(payload["data"][0]["embedding"])
    if request.kind == "tokenize":
        return Answer(payload["tokens"])
    choice = payload["choices"][0]
    message = choice["message"]
    calls = [c["function"] for c in message.get("tool_calls") or []]
    if request.kind == "schema":
        json.loads(message["content"])  # the grammar held it to JSON
    tokens = _tokens((choice.get("logprobs") or {}).get("content") or [])
    return Answer((message.get("content") or "") + "\x00" + json.dumps(calls) +
                  f"\x00{choice['finish_reason']}", tokens or None)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and a and isinstance(a[0], float):
        return len(a) == len(b) and all(abs(x - y) <= 1e-4 for x, y in zip(a, b))
    return bool(a == b)
