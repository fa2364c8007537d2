"""Scenarios where a prompt cache across slots and speculative decoding matter.

- Multi-turn chat: 16 users share a ~1,500-token system prompt, each holds a 3-turn
  conversation; 4 clients over 4 slots take the next ready turn, so a user's next turn
  usually lands on a slot that holds someone else's history.
- Input-grounded generation: the model is asked to repeat a given text of ~300 tokens, at 1
  and 4 clients; our server with n-gram speculation, the same server with it switched off per
  request, and upstream with each of its n-gram modes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import statistics
import time

import httpx
from load import LoadResult, RequestResult

# ------------------------------------------------------------------ texts

_RULES = [
    "Answer in plain language and keep every answer short.",
    "Never invent facts about the customer's account; ask when unsure.",
    "Refunds are possible within thirty days of delivery with a receipt.",
    "Shipping to islands takes two extra working days.",
    "Gift cards cannot be exchanged for cash.",
    "Orders above fifty euros ship for free within the country.",
    "A damaged parcel is replaced at no cost when reported within a week.",
    "Customers may change the delivery address until the parcel leaves the warehouse.",
]
_GROUNDED = [
    "The committee met on Tuesday to discuss the repair of the north pier, the dredging of "
    "the channel and the new fees for visiting yachts. ",
    "To bake the bread, mix the flour, water, salt and yeast, knead the dough for ten "
    "minutes, let it rise for an hour and bake it in a hot oven. ",
    "The river leaves the mountains near the old mill, passes under the stone bridge and "
    "spreads into the valley where the farmers keep their sheep. ",
    "Every morning the keeper climbed the stairs of the lighthouse, cleaned the great lens, "
    "wound the clockwork and wrote the weather in his log. ",
    "The train to the coast leaves at seven, stops at every village on the plain and reaches "
    "the harbour town a little before noon. ",
    "In the spring the school garden is dug over, the children sow beans and radishes, and the "
    "oldest class builds a fence against the rabbits. ",
]


def system_prompt(n_rules: int = 66) -> str:
    """A support assistant's instructions, about 1,500 tokens for SmolLM2's tokenizer."""
    lines = ["You are the support assistant of a small online shop. Follow these rules."]
    for i in range(n_rules):
        lines.append(f"Rule {i + 1}: {_RULES[i % len(_RULES)]} (section {i // 8 + 1})")
    return "\n".join(lines)


def grounded_prompts() -> list[str]:
    """Four ~300-token texts (the same sentences in other orders) to be repeated."""
    prompts = []
    for i in range(4):
        story = "".join(_GROUNDED[i:] + _GROUNDED[:i])
        rules = " ".join(_RULES[i:] + _RULES[:i])
        prompts.append(f"Repeat the following text exactly, word for word.\n\nText:\n{story}"
                       f"{rules}\n\nRepeated text:\n")
    return prompts


QUESTIONS = ["Hello, I am customer {u}. Can I still return the shoes I bought last week?",
             "And if the box was damaged on arrival, what should I do, as customer {u}?",
             "Thanks. One last thing for customer {u}: is shipping to Sardinia slower?"]

# ------------------------------------------------------------------ measuring


@dataclasses.dataclass
class Outcome(RequestResult):
    prompt_n: int = 0      # prompt tokens the server evaluated (from its timings)
    cache_n: int = 0       # prompt tokens it took from its cache instead
    draft_n: int = 0
    accepted: int = 0
    text: str = ""


class Run(LoadResult):
    """A scenario's run: ``results`` are ``Outcome``s."""

    @property
    def outcomes(self) -> list[Outcome]:
        return self.results  # type: ignore[return-value]

    @property
    def ttft_p50_ms(self) -> float:
        values = [o.ttft_s for o in self.outcomes if o.ok]
        return statistics.median(values) * 1000 if values else float("nan")

    def ttft_ms(self, quantile: float) -> float:
        values = sorted(o.ttft_s for o in self.outcomes if o.ok)
        return values[min(len(values) - 1, int(quantile * len(values)))] * 1000 if values else float("nan")

    @property
    def prompt_n(self) -> int:
        return sum(o.prompt_n for o in self.outcomes)

    @property
    def cache_hit_rate(self) -> float:
        cached = sum(o.cache_n for o in self.outcomes)
        return cached / (cached + self.prompt_n) if cached + self.prompt_n else float("nan")

    @property
    def acceptance(self) -> float:
        drafted = sum(o.draft_n for o in self.outcomes)
        return sum(o.accepted for o in self.outcomes) / drafted if drafted else float("nan")


async def _stream(client: httpx.AsyncClient, path: str, body: dict, text_of) -> Outcome:
    sent = time.perf_counter()
    ttft, parts, final = 0.0, [], {}
    try:
        async with client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                return Outcome(False)
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                piece = text_of(event)
                if piece:
                    parts.append(piece)
                    ttft = ttft or time.perf_counter() - sent
                if "timings" in event:
                    final = event
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return Outcome(False)
    timings = final.get("timings", {})
    tokens = int(timings.get("predicted_n", 0))
    return Outcome(tokens > 0, ttft or time.perf_counter() - sent, tokens,
                   prompt_n=int(timings.get("prompt_n", 0)), cache_n=int(timings.get("cache_n", 0)),
                   draft_n=int(timings.get("draft_n", 0)),
                   accepted=int(timings.get("draft_n_accepted", 0)), text="".join(parts))


def _chat_text(event: dict) -> str:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


async def multi_turn(url: str, *, users: int = 16, turns: int = 3, clients: int = 4,
                     max_tokens: int = 32) -> Run:
    system = system_prompt()
    histories = {u: [{"role": "system", "content": system}] for u in range(users)}
    ready: collections.deque[tuple[int, int]] = collections.deque((u, 0) for u in range(users))
    outcomes: list[Outcome] = []
    left = users * turns
    wake = asyncio.Event()

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            if not ready:
                wake.clear()
                await wake.wait()
                continue
            user, turn = ready.popleft()
            question = QUESTIONS[turn % len(QUESTIONS)].format(u=user)
            if turn >= len(QUESTIONS):     # longer conversations ask again, numbered
                question += f" (question {turn + 1})"
            messages = histories[user] + [{"role": "user", "content": question}]
            body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
                    "stream": True, "ignore_eos": True}
            outcome = await _stream(client, url + "/v1/chat/completions", body, _chat_text)
            outcomes.append(outcome)
            histories[user] = messages + [{"role": "assistant", "content": outcome.text}]
            left -= 1
            if turn + 1 < turns:
                ready.append((user, turn + 1))
            wake.set()

    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return Run(clients, time.perf_counter() - started, outcomes)


async def grounded(url: str, *, clients: int, per_client: int = 2, n_predict: int = 160,
                   speculative: bool | None = None) -> Run:
    prompts = grounded_prompts()
    outcomes: list[Outcome] = []

    async def client_loop(index: int, client: httpx.AsyncClient) -> None:
        for i in range(per_client):
            body = {"prompt": prompts[(index + i) % len(prompts)], "n_predict": n_predict,
                    "temperature": 0.0, "stream": True, "ignore_eos": True,
                    "cache_prompt": False}
            if speculative is not None:
                body["speculative"] = speculative
            outcomes.append(await _stream(client, url + "/completion", body,
                                          lambda e: e.get("content", "")))

    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i, client) for i in range(clients)))
        return Run(clients, time.perf_counter() - started, outcomes)


def run_multi_turn(url: str) -> Run:
    return asyncio.run(multi_turn(url))


def run_grounded(url: str, clients: int, speculative: bool | None = None) -> Run:
    return asyncio.run(grounded(url, clients=clients, speculative=speculative))
