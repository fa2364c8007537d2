"""llamaserver on a local Ray cluster: 2 replicas of the default model behind one ingress.

Run as CI's separate step (`pip install -e ".[ray]" && pytest tests/ray`); skipped where Ray
Serve is not installed.  One cluster and one application for the module (start-up is the slow
part); the replica-killing test is last, since it leaves a replacement replica loading.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from llamaserver.ray import APP_NAME, build_app  # noqa: E402
from llamaserver.settings import ServerSettings  # noqa: E402

KEY = "ray-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPLICA = "x-llamaserver-replica"
SYSTEM = ("You are a helpful assistant who answers in one short sentence. Keep answers plain, "
          "avoid lists, and never repeat the question back to the user.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = _free_port()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_THREAD_LIMIT": "1"}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ServerSettings(ray_replicas=2, parallel=2, ctx_size=4096, threads=1,
                                  threads_batch=1, api_key=[KEY])
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while httpx.get(base + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the application did not become healthy"
            time.sleep(0.5)
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


def _chat(url: str, messages: list[dict[str, str]], **extra: Any) -> httpx.Response:
    body = {"messages": messages, "max_tokens": 12, "temperature": 0, **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=120)


def test_openai_client_through_the_ingress(url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key=KEY)
    messages = [{"role": "user", "content": "Say hello."}]
    reply = client.chat.completions.create(model="default", messages=messages, max_tokens=8,
                                           temperature=0)
    text = reply.choices[0].message.content
    assert text and reply.usage.completion_tokens > 0
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="default", messages=messages, max_tokens=8, temperature=0, stream=True) if c.choices]
    assert "".join(pieces) == text


def test_api_keys_are_the_replicas_own(url: str) -> None:
    denied = httpx.post(url + "/completion", json={"prompt": "Hi", "n_predict": 2}, timeout=60)
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"   # public, as upstream
    streamed = httpx.post(url + "/completion", headers=AUTH, timeout=60,
                          json={"prompt": "One, two,", "n_predict": 4, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.count("data: ") >= 2


def test_new_conversations_spread_over_both_replicas(url: str) -> None:
    questions = [f"Name a fact about the number {n}." for n in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda q: _chat(url, [{"role": "system", "content": SYSTEM},
                                                      {"role": "user", "content": q}]), questions))
    assert all(a.status_code == 200 for a in answers)
    assert len({a.headers[REPLICA] for a in answers}) == 2


def test_conversations_stay_on_their_replica_and_reuse_its_cache(url: str) -> None:
    def converse(topic: str) -> list[tuple[str, int, int]]:
        # long enough that a replica keeps the history in host memory when another
        # conversation takes its slot (the cache saves 64 tokens or more)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"I want to learn about {topic}; " * 12}]
        turns = []
        for follow_up in ("Why is that?", "Say it again, shorter."):
            answer = _chat(url, messages)
            assert answer.status_code == 200, answer.text
            usage = answer.json()["usage"]
            turns.append((answer.headers[REPLICA], usage["prompt_tokens"],
                          usage["prompt_tokens_details"]["cached_tokens"]))
            messages += [answer.json()["choices"][0]["message"], {"role": "user", "content": follow_up}]
        return turns

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        conversations = list(pool.map(converse, ["rivers", "bread", "owls", "copper"]))
    for turns in conversations:
        assert len({replica for replica, _, _ in turns}) == 1, turns
        for (_, previous_prompt, _), (_, prompt, cached) in zip(turns, turns[1:]):
            # the whole previous prompt (at least) comes from the replica's cache
            assert cached >= previous_prompt - 1 and prompt > previous_prompt, turns


def test_a_killed_replica_loses_no_request_that_had_not_started_streaming(url: str) -> None:
    # a stream that has started on replica X ...
    lines: list[str] = []
    started = threading.Event()
    replica: list[str] = []

    def stream() -> None:
        body = {"prompt": "Count slowly: 1, 2, 3,", "n_predict": 400, "ignore_eos": True,
                "stream": True}
        with httpx.stream("POST", url + "/completion", json=body, headers=AUTH, timeout=120) as r:
            replica.append(r.headers[REPLICA])
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                    started.set()

    streamer = threading.Thread(target=stream)
    streamer.start()
    assert started.wait(60)
    # ... and requests that have not answered yet, some of them waiting on X
    prompts = [f"Write the word number {n} in French:" for n in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(httpx.post, url + "/completion", headers=AUTH, timeout=180,
                               json={"prompt": p, "n_predict": 12, "ignore_eos": True})
                   for p in prompts]
        time.sleep(1.0)
        actor = ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#LlamaReplica#{replica[0]}",
                              namespace="serve")
        ray.kill(actor, no_restart=True)
        results = [f.result() for f in pending]
    streamer.join(60)
    assert not streamer.is_alive()
    assert [r.status_code for r in results] == [200] * len(prompts), [r.text for r in results]
    assert all(r.json()["tokens_predicted"] == 12 for r in results)
    last = json.loads(lines[-1][len("data: "):])
    assert "error" in last and "replica" in last["error"]["message"]
