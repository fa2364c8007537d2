"""Hosting: two servers mounted in one Quart app, one in Starlette, the api prefix."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from quart import Quart
from server_helpers import in_process, serve_in_thread, sse_events

from llamaserver import LlamaServer


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


@pytest.fixture(scope="module")
def quart_host() -> Iterator[tuple[str, LlamaServer, LlamaServer]]:
    alpha = LlamaServer(parallel=1, ctx_size=512, alias="alpha", endpoint_metrics=True)
    beta = LlamaServer(parallel=1, ctx_size=512, alias="beta", endpoint_metrics=True)
    host = Quart("host")

    @host.get("/")
    async def home() -> dict[str, str]:
        return {"app": "host"}

    alpha.mount(host, "/a")
    host.register_blueprint(beta.blueprint(url_prefix="/b"))
    running = serve_in_thread(host, ready_path="/a/health")
    assert httpx.get(running.url + "/b/health", timeout=60).status_code in (200, 503)
    yield running.url, alpha, beta
    running.stop()
    # the host's after_serving hooks stopped both engines
    assert alpha.engine is None and beta.engine is None


def test_host_routes_still_work(quart_host: tuple[str, LlamaServer, LlamaServer]) -> None:
    url, _, _ = quart_host
    assert httpx.get(url + "/").json() == {"app": "host"}


def test_two_servers_in_one_process(quart_host: tuple[str, LlamaServer, LlamaServer]) -> None:
    url, alpha, beta = quart_host
    with httpx.Client(base_url=url, timeout=120) as c:
        for _ in range(100):
            if c.get("/b/health").status_code == 200:
                break
        assert c.get("/a/v1/models").json()["data"][0]["id"] == "alpha"
        assert c.get("/b/v1/models").json()["data"][0]["id"] == "beta"
        assert alpha.engine is not beta.engine
        before_b = _metric(c.get("/b/metrics").text, "llamacpp:tokens_predicted_total")
        r = c.post("/a/completion", json={"prompt": "Hello", "n_predict": 3})
        assert r.status_code == 200 and r.json()["model"] == "alpha"
        # each server has its own Prometheus registry
        assert _metric(c.get("/a/metrics").text, "llamacpp:tokens_predicted_total") >= 3
        assert _metric(c.get("/b/metrics").text, "llamacpp:tokens_predicted_total") == before_b
        chat = c.post("/b/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        assert chat.status_code == 200 and chat.json()["model"] == "beta"
        # errors keep the llama.cpp shape under a prefix too
        bad = c.post("/a/completion", content=b"{")
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
async def starlette_app() -> AsyncIterator[tuple[object, LlamaServer]]:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    server = LlamaServer(parallel=1, ctx_size=512, alias="gamma")

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("starlette home")

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        # Starlette does not pass lifespan events to mounted apps: start the server here.
        await server.startup()
        yield
        await server.shutdown()

    app = Starlette(routes=[Route("/", home), Mount("/llm", app=server.asgi)],
                    lifespan=lifespan)
    async with lifespan(app):
        yield app, server
    assert server.engine is None


async def test_starlette_mount(starlette_app: tuple[object, LlamaServer]) -> None:
    app, server = starlette_app
    async with in_process(app) as c:
        assert (await c.get("/")).text == "starlette home"
        assert (await c.get("/llm/health")).json()["status"] == "ok"
        assert (await c.get("/llm/v1/models")).json()["data"][0]["id"] == "gamma"
        r = await c.post("/llm/completion", json={"prompt": "Hello", "n_predict": 3})
        assert r.status_code == 200 and r.json()["tokens_predicted"] == 3
        r = await c.post("/llm/completion", json={"prompt": "Hello", "n_predict": 3,
                                                  "stream": True})
        events = sse_events(r.text)
        assert events[-1]["stop"] is True and len(events) >= 2
        missing = await c.get("/llm/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == 404


async def test_startup_is_idempotent(starlette_app: tuple[object, LlamaServer]) -> None:
    _, server = starlette_app
    engine = server.engine
    await server.startup()
    assert server.engine is engine and server.state == "ready"


def test_api_prefix_and_blueprint_names() -> None:
    server = LlamaServer(api_prefix="llama/")  # nothing is loaded until startup()
    rules = {rule.rule for rule in server.app.url_map.iter_rules()}
    assert "/llama/completion" in rules and "/llama/v1/chat/completions" in rules
    assert "/completion" not in rules
    host = Quart("two")
    server.mount(host, "/x")
    server.mount(host, "/y")  # a second mount gets its own blueprint name
    rules = {rule.rule for rule in host.url_map.iter_rules()}
    assert {"/x/health", "/y/health"} <= rules


async def not_serving(c: httpx.AsyncClient, status: int, health: str,
                      error_type: str) -> httpx.Response:
    """/health and a completion both answer ``status``; the completion's answer."""
    answer = await c.get("/health")
    assert answer.status_code == status and answer.json()["status"] == health
    r = await c.post("/completion", json={"prompt": "x"})
    assert r.status_code == status and r.json()["error"]["type"] == error_type
    return r


async def test_requests_before_startup_are_503() -> None:
    server = LlamaServer(parallel=1)
    async with in_process(server.asgi) as c:
        r = await not_serving(c, 503, "loading model", "unavailable_error")
        assert "Retry-After" in r.headers
        assert (await c.get("/v1/models")).json()["data"][0]["meta"] is None


async def test_a_model_that_fails_to_load() -> None:
    server = LlamaServer(model="/nonexistent/model.gguf")
    with pytest.raises(FileNotFoundError):
        await server.startup()
    assert server.state == "error"
    async with in_process(server.asgi) as c:
        await not_serving(c, 500, "error", "server_error")
    await server.shutdown()


async def test_static_files_and_cors(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>hello</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    server = LlamaServer(path=tmp_path)  # static routes need no model
    async with in_process(server.asgi) as c:
        assert (await c.get("/")).text == "<h1>hello</h1>"
        assert (await c.get("/app.js")).text == "console.log(1)"
        assert (await c.get("/../etc/passwd")).status_code == 404
        assert (await c.get("/missing.css")).status_code == 404
        health = await c.get("/health")  # the API still wins over the static catch-all
        assert health.status_code == 503 and health.json()["status"] == "loading model"
        assert health.headers["Access-Control-Allow-Origin"] == "*"
        preflight = await c.options("/v1/chat/completions", headers={
            "Origin": "http://example.com", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
