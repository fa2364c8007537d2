"""Mount llamaserver in a Starlette app (any ASGI framework works the same way).

    pip install starlette
    python examples/embed_in_starlette_app.py [--port 8000]

    curl http://127.0.0.1:8000/                  # Starlette's own route
    curl http://127.0.0.1:8000/llm/v1/models     # llamaserver's OpenAI API under /llm

Starlette does not forward lifespan events to mounted apps, so the app's own lifespan calls
``server.startup()`` and ``server.shutdown()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from llamaserver import LlamaServer

llm = LlamaServer(parallel=2, ctx_size=2048)


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"app": "starlette", "llm": "/llm", "model_state": llm.state})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await llm.startup(wait=False)  # listen at once; /llm/health says 503 until loaded
    try:
        yield
    finally:
        await llm.shutdown()


app = Starlette(routes=[Route("/", index), Mount("/llm", app=llm.asgi)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description="Starlette app with llamaserver under /llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    print(f"serving on http://{args.host}:{args.port} (llamaserver under /llm)")
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
