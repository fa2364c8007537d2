"""A closed-loop streaming load: N clients, each sending its next request when the last ends."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import statistics
import time

import httpx

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten year old.",
    "List some practical tips for learning a new language as an adult.",
    "Describe the water cycle and why it matters for agriculture.",
    "What are the main differences between a comet and an asteroid?",
    "Give a recipe for a simple vegetable soup and explain each step.",
    "Summarize the causes of the French Revolution in a few sentences.",
    "Why is the sky blue during the day and red at sunset?",
]


@dataclasses.dataclass
class RequestResult:
    ok: bool
    ttft_s: float = 0.0
    tokens: int = 0
    error: str = ""


@dataclasses.dataclass
class LoadResult:
    concurrency: int
    wall_s: float
    results: list[RequestResult]
    peak_rss: int = 0

    @property
    def completed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def errors(self) -> int:
        return sum(not r.ok for r in self.results)

    @property
    def tokens_per_s(self) -> float:
        return sum(r.tokens for r in self.results if r.ok) / self.wall_s if self.wall_s else 0.0

    def ttft(self, q: float) -> float:
        values = sorted(r.ttft_s for r in self.results if r.ok)
        if not values:
            return float("nan")
        return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] \
            if len(values) > 1 else values[0]


async def _one(client: httpx.AsyncClient, url: str, prompt: str, n_predict: int) -> RequestResult:
    body = {"prompt": prompt, "n_predict": n_predict, "stream": True, "ignore_eos": True,
            "temperature": 0.0, "cache_prompt": False}
    sent = time.perf_counter()
    ttft = 0.0
    tokens = 0
    try:
        async with client.stream("POST", url + "/completion", json=body) as response:
            if response.status_code != 200:
                return RequestResult(False, error=f"HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event.get("content") and not ttft:
                    ttft = time.perf_counter() - sent
                if event.get("stop"):
                    tokens = int(event.get("tokens_predicted")
                                 or event.get("timings", {}).get("predicted_n") or 0)
                    break
    except (httpx.HTTPError, ValueError) as exc:
        return RequestResult(False, error=type(exc).__name__)
    return RequestResult(tokens > 0, ttft or (time.perf_counter() - sent), tokens,
                         "" if tokens else "no tokens")


async def run_load(url: str, concurrency: int, requests_per_client: int, n_predict: int,
                   rss_of=None, protocol: str = "llama", ban: tuple[int, ...] = ()) -> LoadResult:
    one = _PROTOCOLS[protocol]
    if protocol == "openai":
        one = functools.partial(one, ban=ban)
    results: list[RequestResult] = []
    peak = 0
    stop = asyncio.Event()

    async def sample_rss():
        nonlocal peak
        while not stop.is_set():
            if rss_of:
                peak = max(peak, rss_of())
            await asyncio.sleep(0.1)

    async def client_loop(index: int, client: httpx.AsyncClient):
        for i in range(requests_per_client):
            prompt = PROMPTS[(index + i) % len(PROMPTS)]
            results.append(await one(client, url, prompt, n_predict))

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:
        sampler = asyncio.create_task(sample_rss())
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i, client) for i in range(concurrency)))
        wall = time.perf_counter() - started
        stop.set()
        await sampler
    return LoadResult(concurrency, wall, results, peak)


async def _one_openai(client: httpx.AsyncClient, url: str, prompt: str, n_predict: int,
                      ban: tuple[int, ...] = ()) -> RequestResult:
    """The same request through /v1/completions (llama-cpp-python has no /completion).

    It has no ignore_eos; banning the end-of-generation tokens with logit_bias does the same.
    Its stream carries no token counts: a stream cut at max_tokens generated max_tokens, else
    every chunk with text is one token.
    """
    body = {"prompt": prompt, "max_tokens": n_predict, "stream": True, "temperature": 0.0,
            "logit_bias": {str(t): -1e9 for t in ban}}
    sent = time.perf_counter()
    ttft = 0.0
    chunks = 0
    finish = None
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as response:
            if response.status_code != 200:
                return RequestResult(False, error=f"HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choice = json.loads(line[6:])["choices"][0]
                if choice.get("text"):
                    chunks += 1
                    if not ttft:
                        ttft = time.perf_counter() - sent
                finish = choice.get("finish_reason") or finish
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        return RequestResult(False, error=type(exc).__name__)
    if finish is None:  # a stream cut short by the server
        return RequestResult(False, error="no finish_reason")
    tokens = n_predict if finish == "length" else chunks
    return RequestResult(tokens > 0, ttft or (time.perf_counter() - sent), tokens,
                         "" if tokens else "no tokens")


_PROTOCOLS = {"llama": _one, "openai": _one_openai}
