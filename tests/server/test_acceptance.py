"""Issue acceptance over HTTP: concurrency across slots, and a disconnect freeing its slot fast."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
from server_helpers import PARALLEL, Running, read_until

PROMPTS = [
    "The capital of France is",
    "Once upon a time, a small robot",
    "The best way to learn to cook is",
    "In the year 2100, cities will",
    "A good friend is someone who",
    "The ocean is deep and",
    "My favourite season is autumn because",
    "To bake bread you need",
]


async def _stream_text(client: httpx.AsyncClient, prompt: str, n_predict: int) -> str:
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "stream": True,
            "cache_prompt": False}
    text = ""
    async with client.stream("POST", "/completion", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                text += event["content"]
                if event["stop"]:
                    break
    return text


def test_eight_streaming_clients_over_four_slots(main: Running, client: httpx.Client) -> None:
    assert PARALLEL == 4
    alone = {p: client.post("/completion", json={"prompt": p, "n_predict": 12, "temperature": 0,
                                                 "cache_prompt": False}).json()["content"]
             for p in PROMPTS}
    engine = main.server.engine
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(bool(s.is_processing) for s in engine.slots()))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()

    async def all_clients() -> list[str]:
        async with httpx.AsyncClient(base_url=main.url, timeout=120) as ac:
            return await asyncio.gather(*(_stream_text(ac, p, 12) for p in PROMPTS))

    try:
        texts = asyncio.run(all_clients())
    finally:
        done.set()
        watcher.join()
    assert len(texts) == 8
    for prompt, text in zip(PROMPTS, texts):
        assert text == alone[prompt], prompt
    assert peak == 4


def test_disconnect_frees_the_slot_within_250_ms(main: Running) -> None:
    engine = main.server.engine
    body = {"prompt": "Tell me a very long story about llamas.", "n_predict": 2000,
            "ignore_eos": True, "stream": True, "id_slot": 3}
    with httpx.Client(base_url=main.url, timeout=60) as other:
        with other.stream("POST", "/completion", json=body) as response:
            assert response.status_code == 200
            events = [0]

            def third_event(line: str) -> bool:
                events[0] += line.startswith("data: ")
                return events[0] == 3

            lines = read_until(response, third_event)
            assert engine.slots()[3].is_processing
            lines.close()
            closed = time.perf_counter()
    # the `with` blocks closed the connection
    while engine.slots()[3].is_processing:
        assert time.perf_counter() - closed < 0.25, "slot still busy 250 ms after the disconnect"
        time.sleep(0.002)
    elapsed = time.perf_counter() - closed
    assert elapsed < 0.25
