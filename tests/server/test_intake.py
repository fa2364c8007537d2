"""Request bodies within bounds: size (413), chat messages and characters (400), JSON values,
parsing that lets other requests run, and a bounded worker pool (503)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from server_helpers import Running, error_of, running_server, wait_until

import llamaserver.http._intake as intake
from llamaserver.http._chat import ChatRequest
from llamaserver.http._errors import ApiError

DOCUMENTS = [
    {"prompt": "a, b: [c]", "n": [1, -2, 3.5e-3, 0], "t": [True, False, None], "u": "é\u2028🦙\\\""},
    [[], {}, [[[]]], {"a": {"b": {}}}],
    {"many": [{"k": i, "v": [i, str(i)]} for i in range(300)]},
    "just a string, with: commas",
]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_both_parsers_read_json_alike(doc: object, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = json.dumps(doc).encode()
    assert intake.parse_body(raw) == doc  # the C scanner
    monkeypatch.setattr(intake, "_C_PARSE_VALUES", 0)
    assert intake.parse_body(raw) == doc  # the pure-Python one, counting


@pytest.mark.parametrize("raw", [b'{"t": NaN}', b'{"t": 1e999}', b'{"t": -Infinity}',
                                 b"[" * 100 + b"]" * 100, b"[" * 5000 + b"]" * 5000,
                                 b'{"a": "\\ud800"}', b'{"a": 1,}', b'{"a": "x\ny"}'])
def test_both_parsers_refuse_alike(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    for c_parse_values in (10**9, 0):
        monkeypatch.setattr(intake, "_C_PARSE_VALUES", c_parse_values)
        with pytest.raises(ApiError) as caught:
            intake.parse_body(raw)
        assert caught.value.status == 400


def test_json_values_and_containers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "MAX_JSON_VALUES", 1000)
    monkeypatch.setattr(intake, "MAX_JSON_CONTAINERS", 100)
    assert len(intake.parse_body(json.dumps({"p": list(range(999))}).encode())["p"]) == 999
    for doc, what in (({"p": list(range(1001))}, "1000 values"),
                      ({"p": [[] for _ in range(100)]}, "100 objects and arrays")):
        with pytest.raises(ApiError) as caught:
            intake.parse_body(json.dumps(doc).encode())
        assert caught.value.status == 413 and what in caught.value.message


def test_chat_limits_count_text_not_media() -> None:
    limits = intake.RequestLimits(body_max_bytes=1 << 20, chat_max_messages=3,
                                  chat_max_chars=100, timeout=5)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}}
    limits.check_chat({"messages": [{"role": "user", "content": [image, {"type": "text",
                                                                        "text": "x" * 80}]}]})
    with pytest.raises(ApiError, match="--chat-max-chars"):
        limits.check_chat({"messages": [{"role": "user", "content": "x" * 60},
                                        {"role": "assistant", "content": "y" * 60}]})
    # a part whose "type" is not a string is counted (validation refuses it later), not a 500
    limits.check_chat({"messages": [{"role": "user", "content": [{"type": {"a": 1},
                                                                  "text": "x"}]}]})
    with pytest.raises(ApiError, match="4 messages.*--chat-max-messages"):
        limits.check_chat({"messages": [{"role": "user", "content": "x"}] * 4})


def test_long_message_lists_are_validated_item_by_item() -> None:
    messages = [{"role": "user", "content": f"m{i}"} for i in range(1000)]
    stepped = intake._validate_in_steps(ChatRequest, {"messages": messages, "max_tokens": 3})
    assert stepped == ChatRequest.model_validate({"messages": messages, "max_tokens": 3})
    messages[700] = {"role": 7, "content": "x"}
    with pytest.raises(ApiError, match="'messages.700.role'"):
        intake._validate_in_steps(ChatRequest, {"messages": messages})


# ---- over HTTP ----------------------------------------------------------------------------

# Slow on purpose: close to the loop budget (1,000,000 iterations), well inside the time one.
# About a second of rendering (an empty loop body costs almost nothing, so it counts)
SLOW_TEMPLATE = ("{% set ns = namespace(n=0) %}{% for i in range(300) %}{% for j in range(1000) %}"
                 "{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}"
                 "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")


@pytest.fixture(scope="module")
def small() -> Iterator[Running]:
    with running_server(parallel=1, ctx_size=512, body_max_bytes=4096, chat_max_messages=8,
                        chat_max_chars=1000, threads_http=1, http_queue_size=0,
                        chat_template=SLOW_TEMPLATE) as running:
        yield running


def test_body_too_large_is_413(small: Running) -> None:
    big = {"prompt": "x" * 5000}
    with httpx.Client(base_url=small.url, timeout=60) as client:
        error = error_of(client.post("/completion", json=big), 413, "invalid_request_error")
        assert "--body-max-bytes" in error["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        response = client.post("/completion", content=chunks())
        error = error_of(response, 413, "invalid_request_error")
        assert response.headers["connection"] == "close"
        assert client.get("/health").status_code == 200


def test_too_many_messages_or_characters_is_400(small: Running) -> None:
    with httpx.Client(base_url=small.url, timeout=60) as client:
        for path in ("/v1/chat/completions", "/apply-template"):
            many = {"messages": [{"role": "user", "content": "hi"}] * 9}
            error = error_of(client.post(path, json=many), 400, "invalid_request_error")
            assert "9 messages" in error["message"] and "--chat-max-messages" in error["message"]
            long = {"messages": [{"role": "user", "content": "x" * 600}] * 2}
            error = error_of(client.post(path, json=long), 400, "invalid_request_error")
            assert "--chat-max-chars" in error["message"]


def test_the_worker_pool_is_bounded(small: Running) -> None:
    pool = small.server._ctx.pool
    body = {"messages": [{"role": "user", "content": "hi"}]}
    first: list[httpx.Response] = []
    with httpx.Client(base_url=small.url, timeout=60) as client:
        render = threading.Thread(target=lambda: first.append(
            client.post("/apply-template", json=body)))
        render.start()
        try:
            assert wait_until(lambda: pool.pending == 1, 30)
            t0 = time.monotonic()
            response = client.post("/apply-template", json=body)
            error = error_of(response, 503, "unavailable_error")
            assert "busy" in error["message"] and int(response.headers["retry-after"]) >= 1
            assert time.monotonic() - t0 < 2  # refused at once, not queued
        finally:
            render.join(60)
        assert first[0].status_code == 200 and first[0].json()["prompt"] == "user: hi\n"
        assert wait_until(lambda: pool.pending == 0, 30)
        assert client.post("/apply-template", json=body).status_code == 200


def test_twenty_thousand_messages_on_a_default_server(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}] * 20_000}
    error = error_of(client.post("/v1/chat/completions", json=body), 400,
                     "invalid_request_error")
    assert "20000 messages" in error["message"] and "--chat-max-messages" in error["message"]
