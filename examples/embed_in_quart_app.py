"""Mount llamaserver's API inside your own Quart app.

    python examples/embed_in_quart_app.py [--port 8000]

    curl http://127.0.0.1:8000/                         # the app's own route
    curl http://127.0.0.1:8000/llm/health               # llamaserver under /llm
    curl http://127.0.0.1:8000/llm/completion -d '{"prompt": "Hello", "n_predict": 8}'
    curl http://127.0.0.1:8000/ask?q=What+is+a+llama    # an app route that uses the engine

The blueprint registers before/after-serving hooks on the host app: the model loads when the
app starts serving and is freed when it stops.
"""

from __future__ import annotations

import argparse
import asyncio

from quart import Quart, request

from llamaserver import LlamaServer
from llamaserver.engine import GenerationRequest
from llama_ffi import SamplerParams

app = Quart(__name__)
llm = LlamaServer(parallel=2, ctx_size=2048, alias="smollm2")
llm.mount(app, "/llm")


@app.get("/")
async def index() -> dict[str, object]:
    return {"app": "my app", "llm": "/llm", "model_state": llm.state}


@app.get("/ask")
async def ask() -> dict[str, object]:
    """Use the engine directly (no HTTP round trip) from one of the app's own routes."""
    engine = llm.engine
    if engine is None or engine.state != "ready":
        return {"error": "the model is still loading"}, 503
    question = request.args.get("q", "What is a llama?")

    def prepare():  # template, tokenizer and sampler chain: off the event loop
        prompt = engine.chat_template.render([{"role": "user", "content": question}])
        tokens = engine.vocab.tokenize(prompt, add_special=False, parse_special=True)
        return engine.prepare(GenerationRequest(tokens, SamplerParams(temperature=0.2),
                                                n_predict=48))

    stream = engine.submit(await asyncio.to_thread(prepare))
    final = await stream.result()
    return {"question": question, "answer": final.content}


def main() -> None:
    parser = argparse.ArgumentParser(description="Quart app with llamaserver under /llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
