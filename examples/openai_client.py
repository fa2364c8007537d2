"""Talk to llamaserver with the official OpenAI Python client.

    python examples/openai_client.py                 # starts a server in-process (free port)
    python examples/openai_client.py --url URL       # uses a running `llamaserver` instead

The in-process server runs hypercorn on its own event loop in a thread, so the synchronous
OpenAI client can call it from the main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import openai

from llamaserver import LlamaServer


@contextmanager
def local_server() -> Iterator[str]:
    """Serve the default model on 127.0.0.1:<free port>; yields the base URL."""
    server = LlamaServer(host="127.0.0.1", port=0, parallel=2, ctx_size=2048)
    listening = threading.Event()
    url: list[str] = []
    stop: list[asyncio.Event] = []
    loop: list[asyncio.AbstractEventLoop] = []

    async def run() -> None:
        loop.append(asyncio.get_running_loop())
        stop.append(asyncio.Event())

        def on_listening(address: str) -> None:
            url.append(address)
            listening.set()

        await server.serve_async(shutdown_trigger=stop[0].wait, on_listening=on_listening)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    listening.wait(60)
    try:
        yield url[0]
    finally:
        loop[0].call_soon_threadsafe(stop[0].set)
        thread.join(60)


def demo(base_url: str) -> None:
    # max_retries also covers the few seconds while the model is loading (503 + Retry-After).
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-no-key-required",
                           max_retries=5)
    print("models:", [m.id for m in client.models.list().data])

    reply = client.chat.completions.create(
        model="local",
        messages=[{"role": "system", "content": "You are a concise assistant."},
                  {"role": "user", "content": "Name three colors of the rainbow."}],
        max_tokens=32, temperature=0)
    print("chat:", reply.choices[0].message.content)

    print("stream:", end=" ", flush=True)
    for chunk in client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=24, temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()

    text = client.completions.create(model="local", prompt="The capital of France is",
                                     max_tokens=8, temperature=0)
    print("completion:", text.choices[0].text)

    # llama.cpp options that OpenAI does not have go through extra_body
    constrained = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Is water wet?"}], max_tokens=4,
        extra_body={"grammar": 'root ::= "yes" | "no"'})
    print("grammar:", constrained.choices[0].message.content)

    # tools: the answer is held to a JSON form and comes back as message.tool_calls
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    called = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather], tool_choice="required", max_tokens=48, temperature=0)
    for call in called.choices[0].message.tool_calls or []:
        print("tool call:", call.function.name, call.function.arguments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running llamaserver")
    args = parser.parse_args()
    if args.url:
        demo(args.url.rstrip("/"))
    else:
        with local_server() as url:
            demo(url)


if __name__ == "__main__":
    main()
